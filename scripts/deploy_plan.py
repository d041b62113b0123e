"""deploy.sh's pure logic: check opts.json and schedule.json, plan the schedules (a backup per database or list,
the status check, a restore drill per database), and read the CLIs' answers. The shell script runs the commands;
this file decides, and never prints an opts.json value.

Subcommands (each reads files or stdin, prints tab-separated lines, exits 2 with a message on bad input):
  check TARGET OPTS SCHEDULE TRIGGER_PREFIX RULE_PREFIX
        -> per schedule (each backup key, the status check, each drill): trigger-name, rule-name ("-" on
           code-engine), cron, payload JSON
  env-file OPTS OUT            write opts.json as a KEY=VALUE env file (mode 0600) for a Code Engine secret
  param-file OPTS OUT          write the OpenWhisk action's bound parameters (mode 0600; OUT "-": write nothing): opts.json
                               plus BOUND_DEFAULTS it lacks; -> the names of those added
  stale-keys OPTS              stdin: `ibmcloud ce secret get --output json`; -> keys the secret has, opts.json not
  rows                         stdin: a `list` table; -> name, last column (rule status) per row
  trigger-state CRON PAYLOAD   stdin: `wsk trigger get T`; -> same | changed | plain | unknown
  subscription-state CRON DATA stdin: `ibmcloud ce subscription cron get --output json`; -> same | changed
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from backup.config import DEFAULT_IAM_TOKEN_URL, TUNABLES, check_db_name, load_config  # noqa: E402 - the repo root is only on sys.path now
from backup.errors import ConfigError  # noqa: E402
from backup.redaction import redact, register  # noqa: E402

TARGETS = ("wsk", "ibmcloud-fn", "code-engine")
# Staggered schedules for databases without a cron: 00:05, 00:10, ... so backups do not all start at once.
STAGGER_MINUTES = 5
# Drills without a cron: Sunday from 03:00 (after the night's staggered backups of the first 35 databases), 10
# minutes apart: a drill restores a whole database, more work for Cloudant than a backup.
DRILL_START_MINUTES = 3 * 60
DRILL_STAGGER_MINUTES = 10
# OpenWhisk entity names: word characters, then also @ . - and space; we never use @ or space.
_WSK_SAFE = re.compile(r"[A-Za-z0-9_.-]")
# OpenWhisk caps entity names at 256 characters.
_WSK_MAX = 256
# Code Engine names: lowercase alphanumerics and '-', starting and ending alphanumeric, at most 63 characters.
_CE_SAFE = re.compile(r"[a-z0-9-]")
_CE_MAX = 63
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Bound with the OpenWhisk action when opts.json has none of them. The action is `final`: a bound parameter cannot
# be given by an invocation or a trigger, an unbound one can. These two decide where the IAM API keys are sent and
# whether certificates are checked, so they are bound too, at their defaults.
BOUND_DEFAULTS: dict[str, Any] = {"IAM_TOKEN_URL": DEFAULT_IAM_TOKEN_URL, "DISABLE_TLS_VERIFY": False}
# Parameters each invocation gives itself, never bound: under `final`, a bound CLOUDANT_DB would make every
# trigger's activation fail (its payload names the database), a bound CONTINUE_HOP every continuation.
INVOCATION_PARAMS = ("CLOUDANT_DB", "CONTINUE_HOP")

# (name, low, high, names for values) per cron field, in order: standard (Vixie) cron, as schedule.json has it.
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}),
    ("day-of-week", 0, 7, {d.lower(): i for i, d in enumerate(_DAYS)}),  # 7 is Sunday too
)
_MONTH, _DOW = 3, 4
# A schedule entry's key: one database, "*" (every database) or a comma list; the action fans out for the last two.
ALL_DATABASES = "*"
# The entity names of the "*" backup, of the status check and (before the database's name) of a drill: no database
# name starts with "-", so none of them is ever a backup's name, nor one another's.
_ALL_SUFFIX = "-all"
_STATUS_SUFFIX = "-status"
_DRILL_INFIX = "-drill--"
_SCHEDULE_KEYS = ("databases", "status", "drills")
_STATUS_KEYS = ("cron", "databases", "max_age_hours")
_MAX_AGE = next(t for t in TUNABLES if t.name == "MAX_AGE_HOURS")


class InputError(Exception):
    """Bad opts.json, schedule.json or cron: the message says which file and what to fix."""


# ---- cron -------------------------------------------------------------------------------------------------


def _cron_value(text: str, low: int, high: int, names: dict[str, int]) -> int:
    value = names.get(text.lower())
    if value is None:
        if not text.isdigit():
            raise ValueError(f"{text!r} is not a number")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is outside {low}-{high}")
    return value


# One item of a field's list: None for * (with its step), else (first, last, step) in standard cron's numbers.
_Item = tuple[int, int, int | None]


def _parse_cron(expr: str) -> list[list[tuple[str, _Item | None]]]:
    """Per field, its items as (text, parsed); ValueError naming the field on anything standard cron refuses."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    parsed = []
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        items: list[tuple[str, _Item | None]] = []
        for item in text.split(","):
            try:
                body, slash, step = item.partition("/")
                if slash and (not step.isdigit() or int(step) < 1):
                    raise ValueError(f"step {step!r} must be a positive number")
                if body == "*":
                    items.append((item, None))
                    continue
                first, dash, last = body.partition("-")
                start = _cron_value(first, low, high, names)
                end = _cron_value(last, low, high, names) if dash else start
                if start > end:
                    raise ValueError(f"range {body!r} runs backwards")
                if slash and not dash:
                    raise ValueError(f"{item!r}: a step needs * or a range before it")
                items.append((item, (start, end, int(step) if slash else None)))
            except ValueError as exc:
                raise ValueError(f"{name} field {text!r}: {exc}") from None
        parsed.append(items)
    return parsed


def check_cron(expr: str) -> str:
    """The expression with single spaces, or ValueError: 5 fields of *, N, N-M, */S, N-M/S and lists."""
    _parse_cron(expr)
    return " ".join(expr.split())


def _without_seven(item: _Item) -> list[_Item]:
    """A day-of-week item without 7 (Sunday in standard cron), which node cron 1.x and Code Engine refuse."""
    start, end, step = item
    if end < 7:
        return [item]
    if start == 7:
        return [(0, 0, None)]
    # start..6 keeps every value but 7; Sunday joins as 0 when the step reaches 7 (and start..6 lacks it).
    return [(start, 6, step)] + ([(0, 0, None)] if start > 0 and (7 - start) % (step or 1) == 0 else [])


def _render(item: _Item, names: tuple[str, ...] | None = None, offset: int = 0) -> str:
    """N, N-M or N-M/S, with names[value - offset] for each value when names are given."""
    start, end, step = item
    first, last = (names[start - offset], names[end - offset]) if names else (str(start), str(end))
    if start == end:
        return first
    return f"{first}-{last}" + (f"/{step}" if step else "")


def target_cron(expr: str, target: str) -> str:
    """The checked standard-cron expression rewritten so the target's scheduler reads the same times.

    wsk / ibmcloud-fn: the alarms feed (/whisk.system/alarms) parses with node `cron` 1.x, where months are 0-11
    and days of the week 0-6: a number there means another month (1 = February) or fails (12, 7). Names mean the
    same to both, so every month and day-of-week value becomes a name (7 -> SUN); * and */S select the same values
    in both, and a range keeps its step (JAN-DEC/3 is Jan, Apr, Jul, Oct in both). node cron 1.x also disagrees
    with standard cron (and across its versions) on a day-of-month and a day-of-week that are both restricted
    (standard cron: either matches), so that is refused.
    code-engine: cron subscriptions are Knative PingSources (robfig/cron, standard numbering), which refuse only
    day-of-week 7: it becomes 0; everything else is passed as written.
    """
    parsed = _parse_cron(expr)
    fields = expr.split()
    if target == "code-engine":
        fields[_DOW] = ",".join(
            ",".join(_render(part) for part in _without_seven(item)) if item and item[1] == 7 else text
            for text, item in parsed[_DOW]
        )
        return " ".join(fields)
    if not fields[2].startswith("*") and not fields[_DOW].startswith("*"):
        raise ValueError(
            f"day-of-month {fields[2]!r} and day-of-week {fields[_DOW]!r} are both restricted: standard cron then runs "
            "on the days that match either, while the OpenWhisk alarms feed (node cron 1.x) needs both to match in some "
            "of its versions; restrict only one of them"
        )
    for index, names, offset in ((_MONTH, _MONTHS, 1), (_DOW, _DAYS, 0)):
        out = []
        for text, item in parsed[index]:
            if item is None:
                out.append(text)  # * and */S: the same values in both numberings
            else:
                out += [_render(part, names, offset) for part in (_without_seven(item) if index == _DOW else [item])]
        fields[index] = ",".join(out)
    return " ".join(fields)


def staggered_cron(index: int) -> str:
    """The index-th (0-based) staggered daily time: 00:05, 00:10, ... wrapping after a day."""
    minutes = (STAGGER_MINUTES * (index + 1)) % (24 * 60)
    return f"{minutes % 60} {minutes // 60} * * *"


def staggered_drill_cron(index: int) -> str:
    """The index-th (0-based) staggered weekly drill: Sunday 03:00, 03:10, ... wrapping within Sunday."""
    minutes = (DRILL_START_MINUTES + DRILL_STAGGER_MINUTES * index) % (24 * 60)
    return f"{minutes % 60} {minutes // 60} * * 0"


# ---- names ------------------------------------------------------------------------------------------------


def entity_name(prefix: str, db: str, target: str) -> str:
    """A valid, unique, stable trigger/rule/subscription name for a database (db names may hold / $ ( ) + -).

    A name that is already safe is used as is; any other gets a readable slug plus a hash of the real name,
    so "a/b" and "a-b" never collide.
    """
    code_engine = target == "code-engine"
    safe, limit = (_CE_SAFE, _CE_MAX) if code_engine else (_WSK_SAFE, _WSK_MAX)
    name = prefix + db
    if len(name) <= limit and all(safe.fullmatch(c) for c in db) and (name[-1].isalnum() or not code_engine):
        return name
    digest = hashlib.sha256(db.encode()).hexdigest()[:10]
    slug = re.sub(r"-+", "-", "".join(c if safe.fullmatch(c) else "-" for c in db)).strip("-")
    room = limit - len(prefix) - len(digest) - 1
    if room < 1:
        raise InputError(f"name prefix {prefix!r} leaves no room for database names (limit {limit})")
    slug = slug[:room].rstrip("-")
    return f"{prefix}{slug}-{digest}" if slug else f"{prefix}{digest}"


def schedule_name(prefix: str, key: str, target: str, kind: str = "backup") -> str:
    """The trigger/rule/subscription name of a schedule entry. A backup of a database or a list: entity_name; of
    "*": PREFIX-all; the status check: PREFIX-status; a drill: entity_name under PREFIX-drill--. PREFIX ends in
    "--" and no database name starts with "-", so none of these is ever another's (a database "status" included)."""
    if kind == "drill":
        return entity_name(prefix + _DRILL_INFIX, key, target)
    if kind == "backup" and key != ALL_DATABASES:
        return entity_name(prefix, key, target)
    name = prefix + (_STATUS_SUFFIX if kind == "status" else _ALL_SUFFIX)
    if len(name) > (_CE_MAX if target == "code-engine" else _WSK_MAX):
        raise InputError(f"name prefix {prefix!r} is too long")
    return name


def check_schedule_key(key: str) -> str | None:
    """Why a schedule.json key cannot be a CLOUDANT_DB to back up, or None: a database, "*" or "a,b"."""
    if key == ALL_DATABASES:
        return None
    if "," not in key:
        return check_db_name(key, "database")
    names = [name.strip() for name in key.split(",")]
    if not all(names):
        return f"the database list {key!r} has an empty name"
    return next((problem for name in names if (problem := check_db_name(name, "database"))), None)


# ---- inputs -----------------------------------------------------------------------------------------------


def _load_json(path: str, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError(f"{path} not found: copy {what}.example.json to {path} and fill it in") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # its message names the position, never the content
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def load_opts(path: str) -> dict[str, Any]:
    opts = _load_json(path, "opts")
    if not isinstance(opts, dict):
        raise InputError(f"{path} must hold a JSON object of parameters, got {type(opts).__name__}")
    for value in opts.values():
        if isinstance(value, str):
            register(value)  # from here on, redact() masks every opts.json value in our messages
    problems = [
        f"{path}: {key} must be a string, number or true/false"
        for key, value in opts.items()
        if not isinstance(value, (str, int, float, bool))
    ]
    if problems:
        raise InputError("\n".join(problems))
    return opts


# ---- schedule.json: backups, the status check, restore drills ---------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One schedule: deploy.sh makes one trigger and rule (or one cron subscription) of it."""

    kind: str  # backup | status | drill
    key: str  # backup: its schedule.json key (a database, "*" or "a,b"); drill: the database; status: ""
    cron: str  # checked standard cron, not yet rewritten for the target
    payload: dict[str, Any]  # the trigger's payload / the subscription's data
    label: str  # what messages call it: "the backup of 'mydb'", "the status check", "the drill of 'mydb'"
    what: str  # what messages call its cron: "the cron of 'mydb'", "the status cron", "the drill cron of 'mydb'"


def _shape(path: str) -> str:
    return (f'{path} must look like {{"databases": {{"mydb": "5 0 * * *", "otherdb": null}}}} with at least one database, '
            'or a "status" or "drills" schedule (docs/deploy.md; to remove every schedule, run deploy.sh --uninstall)')


def _cron(value: Any, what: str, path: str, problems: list[str], nullable: bool = True) -> str | None:
    """The checked cron of a string value; None (and a problem) otherwise."""
    if not isinstance(value, str):
        problems.append(f'{path}: {what} must be a string like "5 0 * * *"' + (" or null" if nullable else ""))
        return None
    try:
        return check_cron(value)
    except ValueError as exc:
        problems.append(f"{path}: {what} ({value!r}) is invalid: {exc}")
        return None


def _backups(databases: Any, path: str, problems: list[str]) -> list[Entry]:
    if databases is None:
        return []
    if not isinstance(databases, dict):
        problems.append(_shape(path))
        return []
    entries, unscheduled = [], 0
    for db, cron in databases.items():
        if problem := check_schedule_key(db):
            problems.append(f"{path}: {problem}")
            continue
        what = f"the cron of {db!r}"
        if cron is None:
            checked: str | None = staggered_cron(unscheduled)
            unscheduled += 1
        else:
            checked = _cron(cron, what, path, problems)
        if checked:
            entries.append(Entry("backup", db, checked, {"CLOUDANT_DB": db}, f"the backup of {db!r}", what))
    return entries


def _status(status: Any, path: str, problems: list[str]) -> list[Entry]:
    """{"cron": ..., "databases": "*" (default) | "a,b" | "db" | null (those with backups), "max_age_hours": N}."""
    if status is None:
        return []
    if not isinstance(status, dict):
        problems.append(f'{path}: status must be an object like {{"cron": "0 7 * * *", "databases": "*", "max_age_hours": 26}}')
        return []
    problems += [f"{path}: status has an unknown key {key!r} (it takes {', '.join(_STATUS_KEYS)})"
                 for key in status if key not in _STATUS_KEYS]
    payload = {"OPERATION": "status", **_status_databases(status.get("databases", ALL_DATABASES), path, problems),
               **_max_age(status.get("max_age_hours"), path, problems)}
    if status.get("cron") is None:
        problems.append(f'{path}: status.cron is missing: a time after the night\'s backups, like "0 7 * * *"')
        return []
    cron = _cron(status["cron"], "the status cron", path, problems, nullable=False)
    return [Entry("status", "", cron, payload, "the status check", "the status cron")] if cron else []


def _status_databases(databases: Any, path: str, problems: list[str]) -> dict[str, Any]:
    """status.databases as the payload's CLOUDANT_DB; null: none (status then checks every database in the bucket)."""
    if databases is None:
        return {}
    if not isinstance(databases, str):
        problems.append(f'{path}: status.databases must be "*", a database, a list "a,b", or null (every database '
                        "with backups in the bucket)")
    elif problem := check_schedule_key(databases):
        problems.append(f"{path}: status.databases: {problem}")
    else:
        return {"CLOUDANT_DB": databases}
    return {}


def _max_age(max_age: Any, path: str, problems: list[str]) -> dict[str, Any]:
    """status.max_age_hours as the payload's MAX_AGE_HOURS, in the range a run accepts; null: none (the default)."""
    low, high = _MAX_AGE.low, _MAX_AGE.high
    if max_age is None:
        return {}
    if isinstance(max_age, bool) or not isinstance(max_age, int) or not low <= max_age <= high:
        problems.append(f"{path}: status.max_age_hours must be a whole number of hours from {low} to {high}, "
                        f"got {json.dumps(max_age)}")
        return {}
    return {"MAX_AGE_HOURS": max_age}


def _drills(drills: Any, path: str, problems: list[str]) -> list[Entry]:
    """{"mydb": "0 3 * * 0", "otherdb": null}: one restore drill per database; null: staggered on Sunday."""
    if drills is None:
        return []
    if not isinstance(drills, dict):
        problems.append(f'{path}: drills must be an object like {{"mydb": "0 3 * * 0", "otherdb": null}}')
        return []
    entries, unscheduled = [], 0
    for db, cron in drills.items():
        if db == ALL_DATABASES or "," in db:
            problems.append(f"{path}: drills: {db!r} must be one database: a drill restores one (give each its own key)")
            continue
        if problem := check_db_name(db, "database"):
            problems.append(f"{path}: drills: {problem}")
            continue
        what = f"the drill cron of {db!r}"
        if cron is None:
            checked: str | None = staggered_drill_cron(unscheduled)
            unscheduled += 1
        else:
            checked = _cron(cron, what, path, problems)
        if checked:
            payload = {"OPERATION": "drill", "CLOUDANT_DB": db}
            entries.append(Entry("drill", db, checked, payload, f"the drill of {db!r}", what))
    return entries


def load_schedule(path: str) -> list[Entry]:
    """Every schedule of schedule.json: backups in file order, then the status check, then the drills."""
    schedule = _load_json(path, "schedule")
    if not isinstance(schedule, dict):
        raise InputError(_shape(path))
    problems = [f"{path}: unknown key {key!r} (it takes {', '.join(_SCHEDULE_KEYS)}): " + _shape(path)
                for key in schedule if key not in _SCHEDULE_KEYS]
    entries = [*_backups(schedule.get("databases"), path, problems), *_status(schedule.get("status"), path, problems),
               *_drills(schedule.get("drills"), path, problems)]
    if problems:
        raise InputError("\n".join(problems))
    if not entries:
        raise InputError(_shape(path))
    return entries


def coverage_warnings(entries: list[Entry], path: str) -> list[str]:
    """What the status check or a drill would find missing because this file backs it up nowhere (only when the file
    has backups at all: drills alone may go to another target, e.g. Code Engine beside backups on OpenWhisk)."""
    keys = [entry.key for entry in entries if entry.kind == "backup"]
    if not keys or ALL_DATABASES in keys:
        return []
    backed_up = {name.strip() for key in keys for name in key.split(",")}
    warnings = []
    for entry in entries:
        db = entry.payload.get("CLOUDANT_DB") if entry.kind != "backup" else None
        if db == ALL_DATABASES:
            warnings.append(f'{path}: the status check covers every database of the account ("*"), but only '
                            f"{', '.join(sorted(backed_up))} are backed up: the others will be stale every day (set "
                            'status.databases to those, or to null: every database with backups in the bucket)')
        elif db is not None and (missing := [name for name in db.split(",") if name.strip() not in backed_up]):
            warnings.append(f"{path}: {entry.label}: no backup schedule in this file takes {', '.join(map(repr, missing))}")
    return warnings


def _given_by_triggers(opts: dict[str, Any], opts_path: str, entries: list[Entry]) -> list[str]:
    """OpenWhisk: what a status or drill trigger gives (OPERATION, MAX_AGE_HOURS) must not be bound: the action
    is final, so a trigger's activation that names a bound parameter is refused."""
    kinds: dict[str, list[str]] = {}
    for entry in entries:
        for key in entry.payload:
            if key in opts and key not in INVOCATION_PARAMS and entry.kind not in kinds.setdefault(key, []):
                kinds[key].append(entry.kind)
    return [f"{opts_path}: {key} must not be in it: the trigger of each {' and '.join(names)} schedule gives it, and a "
            "bound parameter of the action (which is final) cannot be given by an invocation"
            for key, names in kinds.items()]


def _config_problems(opts: dict[str, Any], opts_path: str, schedule_path: str, entries: list[Entry]) -> list[str]:
    """The check every run makes, for every schedule's parameters: a deploy never schedules runs bound to fail.
    Warnings (a typo in opts.json, an anonymous Cloudant) are said now, once, not every night."""
    first, *rest = entries
    try:
        configs = [load_config({**opts, **first.payload})]
    except ConfigError as exc:
        return [f"{opts_path}: {exc}"]  # opts.json alone is wrong (the other schedules would say the same)
    failed: dict[str, list[str]] = {}  # error -> the schedules it fails, so an opts.json gap is said once
    for entry in rest:
        try:
            configs.append(load_config({**opts, **entry.payload}))
        except ConfigError as exc:
            failed.setdefault(str(exc), []).append(entry.label)
    for warning in dict.fromkeys(w for config in configs for w in config.warnings):
        print(f"deploy: warning: {opts_path}: {redact(warning)}", file=sys.stderr)
    return [f"{schedule_path}: {', '.join(labels)} with {opts_path}: {error}" for error, labels in failed.items()]


def check(target: str, opts_path: str, schedule_path: str, trigger_prefix: str, rule_prefix: str) -> list[str]:
    if target not in TARGETS:
        raise InputError(f"DEPLOY_TARGET must be one of {', '.join(TARGETS)}, got {target!r}")
    opts = load_opts(opts_path)
    entries = load_schedule(schedule_path)
    problems = []
    crons = []
    for entry in entries:
        try:
            crons.append(target_cron(entry.cron, target))
        except ValueError as exc:
            problems.append(f"{schedule_path}: {entry.what} ({entry.cron!r}) cannot be scheduled on {target}: {exc}")
    if target != "code-engine":
        problems += [
            f"{opts_path}: {key} must not be in it: each schedule's trigger gives it, and a bound parameter of the action "
            "(which is final) cannot be given by an invocation"
            for key in INVOCATION_PARAMS if key in opts
        ]
        problems += _given_by_triggers(opts, opts_path, entries)
    if target == "code-engine":
        problems += [
            f"{opts_path}: {key!r} cannot be an environment variable name (Code Engine passes parameters that way)"
            for key in opts if not _ENV_NAME.match(key)
        ]
        problems += [
            f"{opts_path}: the value of {key} spans lines, which an env file cannot hold"
            for key, value in opts.items() if isinstance(value, str) and ("\n" in value or "\r" in value)
        ]
    problems += _config_problems(opts, opts_path, schedule_path, entries)
    if not problems:
        for warning in coverage_warnings(entries, schedule_path):
            print(f"deploy: warning: {redact(warning)}", file=sys.stderr)
    if problems:
        raise InputError("\n".join(problems))
    lines, seen = [], set()
    for entry, cron in zip(entries, crons, strict=True):
        trigger = schedule_name(trigger_prefix, entry.key, target, entry.kind)
        rule = schedule_name(rule_prefix, entry.key, target, entry.kind) if target != "code-engine" else "-"
        if trigger in seen:
            raise InputError(f"{schedule_path}: two schedules map to the name {trigger}")
        seen.add(trigger)
        payload = json.dumps(entry.payload, separators=(",", ":"))
        lines.append("\t".join((trigger, rule, cron, payload)))
    return lines


def write_param_file(opts_path: str, out: str) -> list[str]:
    """The OpenWhisk action's bound parameters: opts.json and the BOUND_DEFAULTS it lacks, written to `out` (mode
    0600; "-": not written, for a dry run). Returns the names added."""
    opts = load_opts(opts_path)
    added = {name: value for name, value in BOUND_DEFAULTS.items() if name not in opts}
    if out != "-":
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({**opts, **added}, f)
    return list(added)


def write_env_file(opts_path: str, out: str) -> None:
    opts = load_opts(opts_path)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for key, value in opts.items():
            text = json.dumps(value) if isinstance(value, bool) else str(value)
            f.write(f"{key}={text}\n")


# ---- reading the CLIs' answers ----------------------------------------------------------------------------


def _json_values(text: str) -> Iterator[Any]:
    """Every JSON value embedded in text (the CLIs print "ok: ..." lines before their JSON)."""
    decoder, i = json.JSONDecoder(), 0
    while (i := min((p for p in (text.find("{", i), text.find("[", i)) if p >= 0), default=-1)) >= 0:
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        yield value
        i = end


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def trigger_state(text: str, cron: str, payload: str) -> str:
    """How an existing trigger compares: `trigger get` on a feed trigger prints the alarms feed's READ
    answer ({"config": {"cron", "payload"}, ...}); on a plain trigger, the trigger with no feed annotation."""
    objects = [obj for value in _json_values(text) for obj in _walk(value)]
    for obj in objects:
        config = obj.get("config")
        if isinstance(config, dict) and "cron" in config:
            same = config.get("cron") == cron and _as_json(config.get("payload")) == json.loads(payload)
            return "same" if same else "changed"
    for obj in objects:  # a trigger record (not the feed's activation record) without a feed annotation
        annotations = obj.get("annotations")
        feed = isinstance(annotations, list) and any(isinstance(a, dict) and a.get("key") == "feed" for a in annotations)
        if isinstance(annotations, list) and "name" in obj and "activationId" not in obj and not feed:
            return "plain"
    return "unknown"


def subscription_state(text: str, cron: str, data: str) -> str:
    """Compare a cron subscription's schedule and data, wherever its JSON keeps them."""
    found_cron = found_data = None
    for value in _json_values(text):
        for obj in _walk(value):
            for key in ("schedule", "cron_expression"):
                if isinstance(obj.get(key), str):
                    found_cron = obj[key]
            if "data" in obj and not isinstance(obj["data"], (dict, list)):
                found_data = obj["data"]
    if found_cron is None or found_cron.split() != cron.split():
        return "changed"
    return "same" if _as_json(found_data) == json.loads(data) else "changed"


def stale_keys(text: str, opts_path: str) -> list[str]:
    opts = load_opts(opts_path)
    keys: set[str] = set()
    for value in _json_values(text):
        for obj in _walk(value):
            if isinstance(obj.get("data"), dict):
                keys.update(obj["data"])
    return sorted(keys - set(opts))


def rows(text: str) -> list[str]:
    """name and last column of each table row: `/ns/name  private  active` -> `name<TAB>active`."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if parts:
            out.append(f"{parts[0].rsplit('/', 1)[-1]}\t{parts[-1]}")
    return out


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "check" and len(args) == 5:
            print("\n".join(check(*args)))
        elif command == "env-file" and len(args) == 2:
            write_env_file(*args)
        elif command == "param-file" and len(args) == 2:
            added = write_param_file(*args)
            if added:
                print("\n".join(added))
        elif command == "stale-keys" and len(args) == 1:
            print("\n".join(stale_keys(sys.stdin.read(), args[0])))
        elif command == "rows" and not args:
            print("\n".join(rows(sys.stdin.read())))
        elif command == "trigger-state" and len(args) == 2:
            print(trigger_state(sys.stdin.read(), *args))
        elif command == "subscription-state" and len(args) == 2:
            print(subscription_state(sys.stdin.read(), *args))
        else:
            print(__doc__, file=sys.stderr)
            return 64
    except InputError as exc:
        for line in redact(str(exc)).splitlines():
            print(f"deploy: {line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
