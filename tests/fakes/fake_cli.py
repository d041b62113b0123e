#!/usr/bin/env python3
"""Stand-in for `wsk`, `ibmcloud fn` and `ibmcloud ce`, for deploy.sh's tests (no cloud needed).

Installed as `wsk` and `ibmcloud` (symlinks to this file). Each call appends its argv as one JSON line to
$FAKE_CLI_LOG and keeps the entities in $FAKE_CLI_STATE (JSON), behaving like the real CLIs where deploy.sh
depends on it: `get` of a missing entity fails, `trigger update` of a missing trigger makes a plain trigger
that never fires (as the real wsk does), feed triggers answer `trigger get` with the alarms feed's config,
`list` prints the real tables, names are validated, unknown flags are refused, and `action get` /
`secret get` print parameter values (so a test can see that deploy.sh never passes them on).

Rules: OpenWhisk keeps a rule's status in its trigger's record (Rules.scala getStatus: INACTIVE when the
trigger is missing or does not know the rule), and `rule update` of an existing rule writes the status it
read there. So a deleted trigger's rules turn inactive, a new trigger knows no rule, and a rule updated
onto a recreated trigger stays inactive until `rule enable` (which needs the trigger to exist).
Crons: the alarms feed parses with node `cron` 1.x (months 0-11, days of the week 0-6; it refuses 12 and 7
there), a Code Engine cron subscription with robfig/cron (Knative PingSource: standard numbers, no 7).
Invocations: `action invoke` and `trigger fire` (through the trigger's active rules) record an activation with the
action's bound parameters and the invocation's on top (state["activations"]). An action annotated `final` refuses an
invocation that names one of its bound parameters, as OpenWhisk's controller does (Actions.scala: "incoming
parameters may not override final parameters"): `action invoke` fails with 400, a rule's activation is recorded
as refused.
$FAKE_CLI_FAIL: fail every call whose command line contains this text.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from typing import Any

NAMESPACE = "guest"
ALARM_FEED = "/whisk.system/alarms/alarm"
# OpenWhisk entity names; package/action paths are checked part by part.
WSK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_@ .-]{0,255}$")
CE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
NOT_FOUND = 148  # wsk's exit code for HTTP 404 (status - 256)
BAD_REQUEST = 144  # and for HTTP 400
# OpenWhisk's Messages.parametersNotAllowed: the answer to an invocation that overrides a final parameter.
PARAMETERS_NOT_ALLOWED = "Request defines parameters that are not allowed (e.g., reserved properties)."


class Failure(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---- plumbing ---------------------------------------------------------------------------------------------

def load_state() -> dict[str, Any]:
    path = os.environ["FAKE_CLI_STATE"]
    if not os.path.exists(path):
        return {"packages": {}, "actions": {}, "triggers": {}, "rules": {},
                "ce": {"project": None, "secrets": {}, "jobs": {}, "subscriptions": {}}}
    with open(path) as f:
        return json.load(f)


def save_state(state: dict[str, Any]) -> None:
    with open(os.environ["FAKE_CLI_STATE"], "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)


def parse(args: list[str], values: set[str], pairs: set[str] = frozenset(), flags: set[str] = frozenset(),
          repeat: set[str] = frozenset()) -> tuple[list[str], dict[str, Any]]:
    """Split args into positionals and options; refuse any flag the real command does not have."""
    positional: list[str] = []
    options: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=")
            if name in pairs and not eq:
                if i + 2 >= len(args):
                    raise Failure(f"flag {name} needs KEY VALUE", 2)
                options.setdefault(name, []).append((args[i + 1], args[i + 2]))
                i += 3
                continue
            if name in values:
                if eq:
                    value = inline
                    i += 1
                else:
                    if i + 1 >= len(args):
                        raise Failure(f"flag {name} needs a value", 2)
                    value = args[i + 1]
                    i += 2
                if name in repeat:
                    options.setdefault(name, []).append(value)
                else:
                    options[name] = value
                continue
            if name in flags and not eq:
                options[name] = True
                i += 1
                continue
            raise Failure(f"unknown flag: {arg}", 2)
        positional.append(arg)
        i += 1
    return positional, options


def one(positional: list[str], what: str) -> str:
    if len(positional) != 1:
        raise Failure(f"{what} needs exactly one name, got {positional}", 2)
    return positional[0]


def wsk_name(name: str) -> str:
    for part in name.split("/"):
        if not WSK_NAME.match(part) or part != part.rstrip():
            raise Failure(f"error: '{name}' is not a valid entity name (code 400)", 144)
    return name


def missing(kind: str, name: str) -> Failure:
    return Failure(f"error: Unable to get {kind} '{name}': The requested resource does not exist. (code 4a5b)", NOT_FOUND)


def json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# ---- the schedulers' cron parsers --------------------------------------------------------------------------

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NODE_CRON_ALIASES = {name: i for i, name in enumerate(MONTHS)} | {name: i for i, name in enumerate(DAYS)}
_NODE_CRON_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (0, 11), (0, 6))


def node_cron_1x(source: str) -> list[set[int]]:
    """What node `cron` 1.x (1.8, CronTime._parse/_parseField) makes of an expression: the values of second,
    minute, hour, day of month, month (0-11) and day of week (0-6). ValueError where it throws."""
    def alias(match: re.Match[str]) -> str:
        name = match.group(0).lower()
        if name not in _NODE_CRON_ALIASES:
            raise ValueError(f"Unknown alias: {name}")
        return str(_NODE_CRON_ALIASES[name])

    tokens = re.sub(r"[a-z]{1,3}", alias, source.strip(), flags=re.IGNORECASE).split()
    if len(tokens) < 5:
        raise ValueError("Too few fields")
    if len(tokens) > 6:
        raise ValueError("Too many fields")
    tokens = ["0"] * (6 - len(tokens)) + tokens
    fields = []
    for token, (low, high) in zip(tokens, _NODE_CRON_BOUNDS, strict=True):
        if any(part.find("*") > 0 for part in token.split(",")):
            raise ValueError(f"Field ({token}) has an invalid wildcard expression")
        values: set[int] = set()
        for part in token.replace("*", f"{low}-{high}").split(","):
            match = re.fullmatch(r"(\d+)(?:-(\d+))?(?:/(\d+))?", part)
            if not match:
                raise ValueError(f"Field ({token}) cannot be parsed")
            lower, upper = int(match[1]), int(match[2] or 0) or None  # parseInt(upper) || undefined: "-0" is lost
            if match[3] == "0":
                raise ValueError(f"Field ({token}) has a step of zero")
            step = int(match[3] or 0) or 1
            if upper is not None and lower > upper:
                raise ValueError(f"Field ({token}) has an invalid range")
            if lower < low or (upper or lower) > high:
                raise ValueError(f"Field ({token}) value is out of range")
            if upper is None:
                upper = high if match[3] else lower
            values.update(range(lower, upper + 1, step))
        fields.append(values)
    return fields


_ROBFIG_BOUNDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}),
    (1, 12, {name: i + 1 for i, name in enumerate(MONTHS)}),
    (0, 6, {name: i for i, name in enumerate(DAYS)}),
)


def robfig_standard(spec: str) -> None:
    """robfig/cron v3 ParseStandard (what a Knative PingSource validates its schedule with): ValueError if refused."""
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: {spec}")
    for field, (low, high, names) in zip(fields, _ROBFIG_BOUNDS, strict=True):
        for expr in field.split(","):
            range_and_step = expr.split("/")
            low_high = range_and_step[0].split("-")

            def number(text: str, expr: str = expr, names: dict[str, int] = names) -> int:
                if text.lower() in names:
                    return names[text.lower()]
                if not text.isdigit():
                    raise ValueError(f"failed to parse int from {text}: {expr}")
                return int(text)

            if low_high[0] in ("*", "?"):
                start, end = low, high
            elif len(low_high) > 2:
                raise ValueError(f"too many hyphens: {expr}")
            else:
                start = number(low_high[0])
                end = number(low_high[1]) if len(low_high) == 2 else start
            if len(range_and_step) > 2:
                raise ValueError(f"too many slashes: {expr}")
            if len(range_and_step) == 2:
                if number(range_and_step[1]) == 0:
                    raise ValueError(f"step of range should be a positive number: {expr}")
                if len(low_high) == 1 and low_high[0] not in ("*", "?"):
                    end = high
            if start < low:
                raise ValueError(f"beginning of range ({start}) below minimum ({low}): {expr}")
            if end > high:
                raise ValueError(f"end of range ({end}) above maximum ({high}): {expr}")
            if start > end:
                raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")


def alarm_cron(name: str, cron: Any) -> str:
    """The alarms feed's check of its cron parameter (alarmWebAction.js: new CronJob(params.cron))."""
    try:
        node_cron_1x(str(cron))
    except ValueError as exc:
        raise Failure(f"error: Unable to configure feed of trigger '{name}': cron pattern '{cron}' is not valid ({exc})"
                      " (code 400)", 1) from None
    return str(cron)


# ---- wsk / ibmcloud fn ------------------------------------------------------------------------------------

def wsk(state: dict[str, Any], args: list[str]) -> None:
    if len(args) < 2:
        raise Failure("usage: wsk ENTITY VERB ...", 2)
    entity, verb, rest = args[0], args[1], args[2:]
    handler = {"package": wsk_package, "action": wsk_action, "trigger": wsk_trigger, "rule": wsk_rule}.get(entity)
    if handler is None:
        raise Failure(f"unknown command {entity}", 2)
    handler(state, verb, rest)


def listing(title: str, names: list[str], options: dict[str, Any], column: Any = None) -> None:
    limit, skip = int(options.get("--limit", 30)), int(options.get("--skip", 0))
    if limit > 200:
        raise Failure("error: limit must not exceed 200", 2)
    out(title)
    for name in sorted(names)[skip:skip + limit]:
        extra = f"  {column(name)}" if column else ""
        out(f"/{NAMESPACE}/{name:<60} private{extra}")


def wsk_package(state: dict[str, Any], verb: str, args: list[str]) -> None:
    positional, _ = parse(args, values=set())
    name = wsk_name(one(positional, f"package {verb}"))
    packages = state["packages"]
    if verb == "update":
        packages.setdefault(name, {})
        out(f"ok: updated package {name}")
    elif verb == "get":
        if name not in packages:
            raise missing("package", name)
        out(f"ok: got package {name}\n" + json.dumps({"name": name, "namespace": NAMESPACE}))
    elif verb == "delete":
        if name not in packages:
            raise missing("package", name)
        inside = [a for a in state["actions"] if a.startswith(name + "/")]
        if inside:
            raise Failure(f"error: Unable to delete package '{name}': Package not empty (contains {len(inside)} entity)", 153)
        del packages[name]
        out(f"ok: deleted package {name}")
    else:
        raise Failure(f"unknown verb package {verb}", 2)


def wsk_action(state: dict[str, Any], verb: str, args: list[str]) -> None:
    actions = state["actions"]
    if verb == "update":
        positional, options = parse(args, values={"--kind", "--docker", "--timeout", "-t", "--memory", "-m",
                                                  "--param-file", "-P", "--main"}, pairs={"--param", "-p", "--annotation", "-a"})
        if len(positional) not in (1, 2):
            raise Failure("action update needs NAME [FILE]", 2)
        name = wsk_name(positional[0])
        package = name.split("/")[0] if "/" in name else None
        if package and package not in state["packages"]:
            raise Failure(f"error: Unable to create action '{name}': The requested resource does not exist.", NOT_FOUND)
        if "--kind" in options and "--docker" in options:
            raise Failure("error: cannot set both --kind and --docker", 2)
        action = actions.get(name, {})
        if len(positional) == 2:
            if not os.path.isfile(positional[1]):
                raise Failure(f"error: File '{positional[1]}' is not a valid file or it does not exist", 1)
            action["code"] = positional[1]
        elif "code" not in action:
            raise Failure("error: an action needs code", 2)
        for flag, key in (("--kind", "kind"), ("--docker", "docker"), ("--timeout", "timeout"), ("--memory", "memory")):
            if flag in options:
                action[key] = options[flag]
        if "--param-file" in options:
            with open(options["--param-file"]) as f:
                action["params"] = json.load(f)  # replaces every bound parameter, like the real CLI
        annotations = options.get("--annotation", []) + options.get("-a", [])
        if annotations:  # replaces every annotation, like the real CLI; values are JSON when they parse
            action["annotations"] = {k: json_value(v) for k, v in annotations}
        actions[name] = action
        out(f"ok: updated action {name}")
        return
    if verb == "invoke":
        positional, options = parse(args, values=set(), pairs={"--param", "-p"},
                                    flags={"--result", "-r", "--blocking", "-b"})
        name = wsk_name(one(positional, "action invoke"))
        if name not in actions:
            raise missing("action", name)
        params = {k: json_value(v) for k, v in options.get("--param", []) + options.get("-p", [])}
        refused = activate(state, name, params)
        if refused:
            raise Failure(f"error: Unable to invoke action '{name}': {refused} (code 5c7d)", BAD_REQUEST)
        out(f"ok: invoked /{NAMESPACE}/{name} with id {len(state['activations']):032x}")
        return
    positional, _ = parse(args, values=set())
    name = wsk_name(one(positional, f"action {verb}"))
    if name not in actions:
        raise missing("action", name)
    if verb == "get":
        action = actions[name]
        record = {"name": name, "namespace": NAMESPACE, "limits": {"timeout": action.get("timeout")},
                  "parameters": [{"key": k, "value": v} for k, v in action.get("params", {}).items()]}
        out(f"ok: got action {name}\n" + json.dumps(record, indent=4))
    elif verb == "delete":
        del actions[name]
        out(f"ok: deleted action {name}")
    else:
        raise Failure(f"unknown verb action {verb}", 2)


def activate(state: dict[str, Any], action_name: str, params: dict[str, Any], **record: Any) -> str | None:
    """One activation of an action: its bound parameters, the invocation's on top. Under `final` an invocation that
    names a bound parameter (one with a value) is refused: the reason is returned and recorded."""
    action = state["actions"][action_name]
    bound = {k for k, v in action.get("params", {}).items() if v is not None}
    activations = state.setdefault("activations", [])
    if action.get("annotations", {}).get("final") is True and bound & set(params):
        activations.append({"action": action_name, **record, "refused": PARAMETERS_NOT_ALLOWED})
        return PARAMETERS_NOT_ALLOWED
    activations.append({"action": action_name, **record, "params": {**action.get("params", {}), **params}})
    return None


def forget_rules(state: dict[str, Any], trigger: str) -> None:
    """A trigger record deleted or created anew knows no rule: the rules on it read as inactive."""
    for rule in state["rules"].values():
        if rule["trigger"] == trigger:
            rule["status"] = "inactive"


def wsk_trigger(state: dict[str, Any], verb: str, args: list[str]) -> None:
    triggers = state["triggers"]
    if verb == "list":
        positional, options = parse(args, values={"--limit", "-l", "--skip", "-s"})
        listing("triggers", list(triggers), options)
        return
    positional, options = parse(args, values={"--feed", "-f"}, pairs={"--param", "-p"})
    name = wsk_name(one(positional, f"trigger {verb}"))
    params = {k: json_value(v) for k, v in options.get("--param", [])}
    if verb == "create":
        if name in triggers:
            raise Failure(f"error: Unable to create trigger '{name}': resource already exists (code 409)", 153)
        feed = options.get("--feed")
        if feed is None:
            triggers[name] = {"feed": None, "params": params}
        else:
            if feed != ALARM_FEED:
                raise Failure(f"error: feed {feed} does not exist", NOT_FOUND)
            if "cron" not in params:
                raise Failure("error: alarms trigger feed is missing the cron parameter", 1)
            cron = alarm_cron(name, params["cron"])
            triggers[name] = {"feed": feed, "config": {"cron": cron, "payload": params.get("trigger_payload", {})}}
        forget_rules(state, name)
        out(f"ok: created trigger {name}")
    elif verb == "update":
        if "--feed" in options:
            raise Failure("unknown flag: --feed", 2)
        trigger = triggers.get(name)
        if trigger is None:  # the real wsk silently creates a trigger without a feed: it never fires
            triggers[name] = {"feed": None, "params": params}
            forget_rules(state, name)
        elif trigger["feed"]:
            if "cron" in params:
                trigger["config"]["cron"] = alarm_cron(name, params["cron"])
            if "trigger_payload" in params:
                trigger["config"]["payload"] = params["trigger_payload"]
        else:
            trigger["params"].update(params)
        out(f"ok: updated trigger {name}")
    elif verb == "fire":
        trigger = triggers.get(name)
        if trigger is None:
            raise missing("trigger", name)
        # An alarm trigger fires with its trigger_payload; a plain one with its parameters. The fire's own on top.
        payload = trigger["config"]["payload"] if trigger["feed"] else trigger["params"]
        payload = {**(json_value(payload) if isinstance(payload, str) else payload), **params}
        for rule_name, rule in sorted(state["rules"].items()):
            if rule["trigger"] == name and rule["status"] == "active" and rule["action"] in state["actions"]:
                activate(state, rule["action"], payload, rule=rule_name)
        out(f"ok: triggered /_/{name} with id {len(state.get('activations', [])):032x}")
    elif verb == "get":
        trigger = triggers.get(name)
        if trigger is None:
            raise missing("trigger", name)
        if trigger["feed"]:  # the CLI invokes the feed with lifecycleEvent READ and prints that activation
            config = {"name": name, "namespace": NAMESPACE, **trigger["config"]}
            activation = {"activationId": "0123abcd", "name": "alarm", "namespace": "whisk.system",
                          "annotations": [{"key": "path", "value": "whisk.system/alarms/alarm"}],
                          "response": {"status": "success", "success": True,
                                       "result": {"config": config, "status": {"active": True}}}}
            out(f"ok: invoked {ALARM_FEED} with id 0123abcd\n" + json.dumps(activation, indent=4))
        else:
            record = {"name": name, "namespace": NAMESPACE, "annotations": [],
                      "parameters": [{"key": k, "value": v} for k, v in trigger["params"].items()]}
            out(f"ok: got trigger {name}\n" + json.dumps(record, indent=4))
    elif verb == "delete":
        if name not in triggers:
            raise missing("trigger", name)
        del triggers[name]
        forget_rules(state, name)
        out(f"ok: deleted trigger {name}")
    else:
        raise Failure(f"unknown verb trigger {verb}", 2)


def wsk_rule(state: dict[str, Any], verb: str, args: list[str]) -> None:
    rules = state["rules"]
    if verb == "list":
        positional, options = parse(args, values={"--limit", "-l", "--skip", "-s"})
        listing("rules", list(rules), options, column=lambda n: rules[n]["status"])
        return
    if verb == "update":
        positional, _ = parse(args, values=set())
        if len(positional) != 3:
            raise Failure("rule update needs RULE TRIGGER ACTION", 2)
        name, trigger, action = (wsk_name(p) for p in positional)
        if trigger not in state["triggers"]:
            raise Failure(f"error: Unable to update rule '{name}': trigger {trigger} does not exist", NOT_FOUND)
        if action not in state["actions"]:
            raise Failure(f"error: Unable to update rule '{name}': action {action} does not exist", NOT_FOUND)
        # A new rule is linked ACTIVE; an existing one keeps the status its (old) trigger's record has for it.
        status = rules[name]["status"] if name in rules else "active"
        rules[name] = {"trigger": trigger, "action": action, "status": status}
        out(f"ok: updated rule {name}")
        return
    positional, options = parse(args, values=set(), flags={"--disable"})
    name = wsk_name(one(positional, f"rule {verb}"))
    if name not in rules:
        raise missing("rule", name)
    if verb == "get":
        out(f"ok: got rule {name}\n" + json.dumps({"name": name, **rules[name]}, indent=4))
    elif verb in ("enable", "disable"):
        if rules[name]["trigger"] not in state["triggers"]:
            if verb == "disable":  # already inactive: OpenWhisk ignores the request
                out(f"ok: {verb}d rule {name}")
                return
            raise Failure(f"error: Unable to enable rule '{name}': Only rules with existing triggers can be activated",
                          NOT_FOUND)
        rules[name]["status"] = "active" if verb == "enable" else "inactive"
        out(f"ok: {verb}d rule {name}")
    elif verb == "delete":
        if rules[name]["status"] == "active" and not options.get("--disable"):
            raise Failure(f"error: Unable to delete rule '{name}': rule is active; disable it first", 153)
        del rules[name]
        out(f"ok: deleted rule {name}")
    else:
        raise Failure(f"unknown verb rule {verb}", 2)


# ---- ibmcloud ce ------------------------------------------------------------------------------------------

def ce_missing(kind: str, name: str) -> Failure:
    return Failure(f"FAILED\n{kind} '{name}' does not exist. Use '{kind} list' to see existing ones.", 1)


def ce_name(name: str) -> str:
    if not CE_NAME.match(name):
        raise Failure(f"FAILED\nThe name '{name}' is invalid: use lowercase alphanumerics and '-', at most 63", 1)
    return name


def read_env_file(path: str) -> dict[str, str]:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise Failure(f"FAILED\ntest check: env file {path} is readable by others (mode {mode:o})", 1)
    data = {}
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip("\n").partition("=")
            if not sep:
                raise Failure(f"FAILED\nmalformed env file line in {path}", 1)
            data[key] = value
    return data


def ce(state: dict[str, Any], args: list[str]) -> None:
    ce_state = state["ce"]
    if args[:2] == ["project", "select"]:
        _, options = parse(args[2:], values={"--name", "-n"})
        ce_state["project"] = options["--name"]
        out(f"Selecting project '{options['--name']}'...\nOK")
        return
    if len(args) < 2:
        raise Failure("usage: ibmcloud ce RESOURCE VERB ...", 2)
    if args[0] == "subscription" and args[1] == "cron":
        args = ["subscription-cron", *args[2:]]
    resource, verb, rest = args[0], args[1], args[2:]
    handler = {"secret": ce_secret, "job": ce_job, "subscription-cron": ce_subscription}.get(resource)
    if handler is None:
        raise Failure(f"unknown command {resource}", 2)
    if ce_state["project"] is None:
        raise Failure("FAILED\nNo project selected: run 'ibmcloud ce project select'", 1)
    handler(ce_state, verb, rest)


def ce_secret(ce_state: dict[str, Any], verb: str, args: list[str]) -> None:
    secrets = ce_state["secrets"]
    _, options = parse(args, values={"--name", "-n", "--from-env-file", "--from-literal", "--rm", "--output", "-o"},
                       flags={"--force", "-f"}, repeat={"--rm", "--from-literal"})
    name = ce_name(options.get("--name", ""))
    if verb == "create":
        if name in secrets:
            raise Failure(f"FAILED\nsecret '{name}' already exists", 1)
        if "--from-env-file" not in options:
            raise Failure("FAILED\ngive --from-env-file", 2)
        secrets[name] = read_env_file(options["--from-env-file"])
        out(f"Creating generic secret '{name}'...\nOK")
        return
    if name not in secrets:
        raise ce_missing("secret", name)
    if verb == "get":
        if options.get("--output") == "json":
            out(json.dumps({"metadata": {"name": name}, "data": secrets[name], "type": "Opaque"}))
        else:
            out(f"Getting generic secret '{name}'...\nOK\n\nName: {name}\nData:\n" +
                "\n".join(f"{k}: {v}" for k, v in secrets[name].items()))
    elif verb == "update":
        if "--from-env-file" in options:
            secrets[name].update(read_env_file(options["--from-env-file"]))
        for key in options.get("--rm", []):
            secrets[name].pop(key, None)
        out(f"Updating secret '{name}'...\nOK")
    elif verb == "delete":
        if not options.get("--force"):
            raise Failure("Are you sure you want to delete secret? [y/N]> (no answer: stdin closed)", 1)
        del secrets[name]
        out(f"Deleting secret '{name}'...\nOK")
    else:
        raise Failure(f"unknown verb secret {verb}", 2)


JOB_VALUES = {"--name", "-n", "--image", "--build-source", "--build-strategy", "--command", "--argument",
              "--env-from-secret", "--cpu", "--memory", "--maxexecutiontime", "--retrylimit", "--registry-secret"}


def ce_job(ce_state: dict[str, Any], verb: str, args: list[str]) -> None:
    jobs = ce_state["jobs"]
    _, options = parse(args, values=JOB_VALUES, flags={"--force", "-f"}, repeat={"--argument", "--command"})
    name = ce_name(options.get("--name", ""))
    if verb in ("create", "update"):
        if verb == "create" and name in jobs:
            raise Failure(f"FAILED\njob '{name}' already exists", 1)
        if verb == "update" and name not in jobs:
            raise ce_missing("job", name)
        if verb == "create" and ("--image" in options) == ("--build-source" in options):
            raise Failure("FAILED\ngive either --image or --build-source", 2)
        secret = options.get("--env-from-secret")
        if secret is not None and secret not in ce_state["secrets"]:
            raise Failure(f"FAILED\nsecret '{secret}' does not exist", 1)
        job = jobs.get(name, {})
        job.update({k.lstrip("-"): v for k, v in options.items() if k not in ("--name", "-n")})
        jobs[name] = job
        out(f"{verb.title()[:-1]}ing job '{name}'...\nOK")
        return
    if name not in jobs:
        raise ce_missing("job", name)
    if verb == "get":
        out(json.dumps({"metadata": {"name": name}, "spec": jobs[name]}))
    elif verb == "delete":
        if not options.get("--force"):
            raise Failure("Are you sure you want to delete job? [y/N]> (no answer: stdin closed)", 1)
        del jobs[name]
        out(f"Deleting job '{name}'...\nOK")
    else:
        raise Failure(f"unknown verb job {verb}", 2)


def ce_subscription(ce_state: dict[str, Any], verb: str, args: list[str]) -> None:
    subs = ce_state["subscriptions"]
    if verb == "list":
        parse(args, values=set())
        out("Listing cron event subscriptions...\nOK\n\nName" + " " * 40 + "Age  Ready  Destination  Schedule")
        for name in sorted(subs):
            out(f"{name:<44}1m   true   {subs[name]['destination']:<12} {subs[name]['schedule']}")
        return
    _, options = parse(args, values={"--name", "-n", "--destination-type", "--destination", "--schedule", "--data",
                                     "--output", "-o"}, flags={"--force", "-f"})
    name = ce_name(options.get("--name", ""))
    if verb in ("create", "update"):
        if verb == "create" and name in subs:
            raise Failure(f"FAILED\nsubscription '{name}' already exists", 1)
        if verb == "update" and name not in subs:
            raise ce_missing("subscription", name)
        if options.get("--destination-type", "job") != "job":
            raise Failure("FAILED\ntest check: the destination must be a job", 2)
        sub = subs.get(name, {})
        for flag, key in (("--destination", "destination"), ("--schedule", "schedule"), ("--data", "data")):
            if flag in options:
                sub[key] = options[flag]
        if sub.get("destination") not in ce_state["jobs"]:
            raise Failure(f"FAILED\njob '{sub.get('destination')}' does not exist", 1)
        if "schedule" in sub:
            try:
                robfig_standard(sub["schedule"])
            except ValueError as exc:
                raise Failure(f"FAILED\nThe schedule '{sub['schedule']}' is invalid: {exc}", 1) from None
        if "data" in sub and len(sub["data"].encode()) > 4096:
            raise Failure("FAILED\n--data is limited to 4096 bytes", 2)
        subs[name] = sub
        out(f"{verb.title()[:-1]}ing cron event subscription '{name}'...\nOK")
        return
    if name not in subs:
        raise ce_missing("subscription", name)
    if verb == "get":
        sub = subs[name]
        record = {"metadata": {"name": name}, "spec": {"schedule": sub["schedule"], "data": sub.get("data", ""),
                                                       "contentType": "application/json",
                                                       "sink": {"ref": {"kind": "Job", "name": sub["destination"]}}}}
        out(json.dumps(record, indent=2) if options.get("--output") == "json" else f"Name: {name}\nSchedule: {sub['schedule']}")
    elif verb == "delete":
        if not options.get("--force"):
            raise Failure("Are you sure you want to delete subscription? [y/N]> (no answer: stdin closed)", 1)
        del subs[name]
        out(f"Deleting cron event subscription '{name}'...\nOK")
    else:
        raise Failure(f"unknown verb subscription cron {verb}", 2)


def main(argv: list[str]) -> int:
    program, args = os.path.basename(argv[0]), argv[1:]
    with open(os.environ["FAKE_CLI_LOG"], "a") as log:
        log.write(json.dumps([program, *args]) + "\n")
    try:
        fail = os.environ.get("FAKE_CLI_FAIL")
        if fail and fail in " ".join([program, *args]):
            raise Failure(f"error: simulated failure of '{fail}' (code 503)", 1)
        state = load_state()
        before = json.dumps(state, sort_keys=True)
        if program == "wsk":
            wsk(state, args)
        elif program == "ibmcloud" and args[:1] == ["fn"]:
            wsk(state, args[1:])
        elif program == "ibmcloud" and args[:1] == ["ce"]:
            ce(state, args[1:])
        else:
            raise Failure(f"fake CLI: unsupported command {program} {' '.join(args[:2])}", 2)
        if json.dumps(state, sort_keys=True) != before:
            save_state(state)
    except Failure as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
