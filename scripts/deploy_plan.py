"""deploy.sh's pure logic: check opts.json and schedule.json, plan one schedule entry per database, and read
the CLIs' answers. The shell script runs the commands; this file decides, and never prints an opts.json value.

Subcommands (each reads files or stdin, prints tab-separated lines, exits 2 with a message on bad input):
  check TARGET OPTS SCHEDULE TRIGGER_PREFIX RULE_PREFIX
        -> per database: trigger-name, rule-name ("-" on code-engine), cron, payload JSON
  env-file OPTS OUT            write opts.json as a KEY=VALUE env file (mode 0600) for a Code Engine secret
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
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from backup.config import check_db_name, load_config  # noqa: E402 - the repo root is only on sys.path now
from backup.errors import ConfigError  # noqa: E402
from backup.redaction import redact, register  # noqa: E402

TARGETS = ("wsk", "ibmcloud-fn", "code-engine")
# Staggered schedules for databases without a cron: 00:05, 00:10, ... so backups do not all start at once.
STAGGER_MINUTES = 5
# OpenWhisk entity names: word characters, then also @ . - and space; we never use @ or space.
_WSK_SAFE = re.compile(r"[A-Za-z0-9_.-]")
# OpenWhisk caps entity names at 256 characters.
_WSK_MAX = 256
# Code Engine names: lowercase alphanumerics and '-', starting and ending alphanumeric, at most 63 characters.
_CE_SAFE = re.compile(r"[a-z0-9-]")
_CE_MAX = 63
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# (name, low, high, names for values) per cron field, in order.
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}),
    ("day-of-week", 0, 7, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)


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


def check_cron(expr: str) -> str:
    """The expression with single spaces, or ValueError: 5 fields of *, N, N-M, */S, N-M/S and lists."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            try:
                body, slash, step = item.partition("/")
                if slash and (not step.isdigit() or int(step) < 1):
                    raise ValueError(f"step {step!r} must be a positive number")
                if body == "*":
                    continue
                first, dash, last = body.partition("-")
                start = _cron_value(first, low, high, names)
                if dash and start > _cron_value(last, low, high, names):
                    raise ValueError(f"range {body!r} runs backwards")
                if slash and not dash:
                    raise ValueError(f"{item!r}: a step needs * or a range before it")
            except ValueError as exc:
                raise ValueError(f"{name} field {text!r}: {exc}") from None
    return " ".join(fields)


def staggered_cron(index: int) -> str:
    """The index-th (0-based) staggered daily time: 00:05, 00:10, ... wrapping after a day."""
    minutes = (STAGGER_MINUTES * (index + 1)) % (24 * 60)
    return f"{minutes % 60} {minutes // 60} * * *"


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


def load_schedule(path: str) -> list[tuple[str, str]]:
    """(database, cron) in file order; databases without a cron get staggered times."""
    schedule = _load_json(path, "schedule")
    databases = schedule.get("databases") if isinstance(schedule, dict) else None
    if not isinstance(databases, dict) or not databases:
        raise InputError(
            f'{path} must look like {{"databases": {{"mydb": "5 0 * * *", "otherdb": null}}}} with at least one '
            "database (to remove every schedule, run deploy.sh --uninstall)"
        )
    problems, plan, unscheduled = [], [], 0
    for db, cron in databases.items():
        if problem := check_db_name(db, "database"):
            problems.append(f"{path}: {problem}")
            continue
        if cron is None:
            plan.append((db, staggered_cron(unscheduled)))
            unscheduled += 1
        elif not isinstance(cron, str):
            problems.append(f"{path}: the cron of {db!r} must be a string like \"5 0 * * *\" or null")
        else:
            try:
                plan.append((db, check_cron(cron)))
            except ValueError as exc:
                problems.append(f"{path}: the cron of {db!r} ({cron!r}) is invalid: {exc}")
    if problems:
        raise InputError("\n".join(problems))
    return plan


def check(target: str, opts_path: str, schedule_path: str, trigger_prefix: str, rule_prefix: str) -> list[str]:
    if target not in TARGETS:
        raise InputError(f"DEPLOY_TARGET must be one of {', '.join(TARGETS)}, got {target!r}")
    opts = load_opts(opts_path)
    plan = load_schedule(schedule_path)
    problems = []
    if target == "code-engine":
        problems += [
            f"{opts_path}: {key!r} cannot be an environment variable name (Code Engine passes parameters that way)"
            for key in opts if not _ENV_NAME.match(key)
        ]
        problems += [
            f"{opts_path}: the value of {key} spans lines, which an env file cannot hold"
            for key, value in opts.items() if isinstance(value, str) and ("\n" in value or "\r" in value)
        ]
    # The same check every run makes, so a deploy never schedules backups that are bound to fail.
    try:
        load_config({**opts, "CLOUDANT_DB": plan[0][0]})
    except ConfigError as exc:
        problems.append(f"{opts_path}: {exc}")
    if problems:
        raise InputError("\n".join(problems))
    lines, seen = [], set()
    for db, cron in plan:
        trigger = entity_name(trigger_prefix, db, target)
        rule = entity_name(rule_prefix, db, target) if target != "code-engine" else "-"
        if trigger in seen:
            raise InputError(f"{schedule_path}: two databases map to the schedule name {trigger}")
        seen.add(trigger)
        payload = json.dumps({"CLOUDANT_DB": db}, separators=(",", ":"))
        lines.append("\t".join((trigger, rule, cron, payload)))
    return lines


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
