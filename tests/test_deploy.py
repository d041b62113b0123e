"""deploy.sh against stand-in CLIs (tests/fakes): the exact commands for each target, idempotence, pruning,
--dry-run, --uninstall, input checks before any command, and no opts.json value in any output or argv."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backup.config import load_config
from backup.job import build_args

ROOT = Path(__file__).resolve().parent.parent
FAKES = ROOT / "tests" / "fakes"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(FAKES))

import deploy_plan  # noqa: E402 - scripts/ is not a package
import fake_cli  # noqa: E402 - nor is tests/fakes/

# Values that must never leave opts.json: not in stdout, stderr or any recorded command line.
SECRETS = {
    "CLOUDANT_IAM_KEY": "cloudant-iam-key-7f3a9c2e51",
    "COS_API_KEY": "cos-api-key-b84d02e6aa",
    "COS_SERVICE_INSTANCE_ID": "crn:v1:bluemix:public:cloud-object-storage:global:a/9d1c7e::",
}
OPTS = {
    "CLOUDANT_URL": "https://account-4c21.cloudantnosqldb.appdomain.cloud",
    "COS_ENDPOINT": "s3.eu-gb.cloud-object-storage.appdomain.cloud",
    "COS_BUCKET": "nightly-backups-5e0b",
    **SECRETS,
}
ALL_VALUES = [v for v in OPTS.values() if len(v) >= 8]
READS = {"get", "list", "select"}
FEED = "/whisk.system/alarms/alarm"
# What deploy.sh binds beside opts.json when it has none of them: under `final` only a bound parameter is safe from
# an invocation, and these two decide where the IAM keys go and whether certificates are checked.
DEFAULTS = {"IAM_TOKEN_URL": "https://iam.cloud.ibm.com/identity/token", "DISABLE_TLS_VERIFY": False}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    calls: list[list[str]]  # argv of every CLI call this run made

    @property
    def changes(self) -> list[list[str]]:
        """The calls that change something (everything but get/list/select)."""
        return [c for c in self.calls if not READS & set(c[:5])]


class Deployer:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state = tmp / "state.json"
        self.log = tmp / "calls.jsonl"
        self.zip = tmp / "action.zip"
        self.zip.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: the fake only checks it exists
        self.write_opts(OPTS)
        self.write_schedule({"mydb1": "30 1 * * *", "mydb2": None})
        self.runs: list[Run] = []
        self.secret_values = list(ALL_VALUES)

    def write_opts(self, opts: Any) -> None:
        (self.tmp / "opts.json").write_text(opts if isinstance(opts, str) else json.dumps(opts))

    def write_schedule(self, databases: Any) -> None:
        text = databases if isinstance(databases, str) else json.dumps({"databases": databases})
        (self.tmp / "schedule.json").write_text(text)

    def env(self, target: str, path: str | None = None, **extra: str) -> dict[str, str]:
        env = {
            "PATH": path if path is not None else f"{FAKES}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(self.tmp),
            "DEPLOY_TARGET": target,
            "OPTS_FILE": str(self.tmp / "opts.json"),
            "SCHEDULE_FILE": str(self.tmp / "schedule.json"),
            "ACTION_ZIP": str(self.zip),
            "FAKE_CLI_STATE": str(self.state),
            "FAKE_CLI_LOG": str(self.log),
        }
        if target == "code-engine":
            env["CE_PROJECT"] = "backups"
        env.update(extra)
        return env

    def __call__(self, target: str = "wsk", *args: str, path: str | None = None, **extra: str) -> Run:
        before = len(self.calls())
        proc = subprocess.run(
            [str(ROOT / "deploy.sh"), *args], env=self.env(target, path, **extra), cwd=self.tmp,
            capture_output=True, text=True, timeout=60,
        )
        run = Run(proc.returncode, proc.stdout, proc.stderr, self.calls()[before:])
        self.runs.append(run)
        return run

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def entities(self) -> dict[str, Any]:
        return json.loads(self.state.read_text()) if self.state.exists() else {}

    def assert_no_secret_leaked(self) -> None:
        for run in self.runs:
            for value in self.secret_values:
                assert value not in run.stdout and value not in run.stderr, value
                for call in run.calls:
                    assert not any(value in arg for arg in call), (value, call)


@pytest.fixture
def deploy(tmp_path: Path) -> Deployer:
    deployer = Deployer(tmp_path)
    yield deployer
    deployer.assert_no_secret_leaked()


def ok(run: Run) -> Run:
    assert run.code == 0, run.stderr
    return run


def trigger(db: str) -> str:
    return f"cron-backup-trigger--{db}"


def rule(db: str) -> str:
    return f"cron-backup-rule--{db}"


def param_file(run: Run | str) -> str:
    """The --param-file deploy.sh passed: a private temporary file (opts.json plus DEFAULTS), gone after the run."""
    text = run if isinstance(run, str) else json.dumps(run.calls)
    (found,) = set(re.findall(r"/[^\s'\"]*/bound-params\.json", text))
    assert not Path(found).exists() and "opts.json" not in found
    return found


def first_deploy_commands(cli: list[str], d: Deployer, params: str) -> list[list[str]]:
    return [
        [*cli, "package", "update", "cron"],
        [*cli, "action", "update", "cron/backup", str(d.zip), "--kind", "python:3.11", "--timeout", "300000",
         "--memory", "512", "--param-file", params, "--annotation", "provide-api-key", "true",
         "--annotation", "final", "true"],
        [*cli, "trigger", "create", trigger("mydb1"), "--feed", FEED, "--param", "cron", "30 1 * * *",
         "--param", "trigger_payload", '{"CLOUDANT_DB":"mydb1"}'],
        [*cli, "rule", "update", rule("mydb1"), trigger("mydb1"), "cron/backup"],
        [*cli, "rule", "enable", rule("mydb1")],
        [*cli, "trigger", "create", trigger("mydb2"), "--feed", FEED, "--param", "cron", "5 0 * * *",
         "--param", "trigger_payload", '{"CLOUDANT_DB":"mydb2"}'],
        [*cli, "rule", "update", rule("mydb2"), trigger("mydb2"), "cron/backup"],
        [*cli, "rule", "enable", rule("mydb2")],
    ]


# ---- OpenWhisk (wsk and ibmcloud fn) ---------------------------------------------------------------------


@pytest.mark.parametrize(("target", "cli"), [("wsk", ["wsk"]), ("ibmcloud-fn", ["ibmcloud", "fn"])])
def test_first_deploy_creates_package_action_feed_triggers_and_rules(deploy: Deployer, target: str, cli: list[str]) -> None:
    run = ok(deploy(target))
    commands = first_deploy_commands(cli, deploy, param_file(run))
    assert run.changes == commands
    # Each feed trigger is looked up before it is created: never a blind `trigger update`.
    assert run.calls.index([*cli, "trigger", "get", trigger("mydb1")]) < run.calls.index(commands[2])
    state = deploy.entities()
    assert state["triggers"][trigger("mydb2")] == {"feed": FEED, "config": {"cron": "5 0 * * *", "payload": {"CLOUDANT_DB": "mydb2"}}}
    assert state["rules"][rule("mydb1")] == {"trigger": trigger("mydb1"), "action": "cron/backup", "status": "active"}
    assert state["actions"]["cron/backup"]["params"] == {**OPTS, **DEFAULTS}
    assert state["actions"]["cron/backup"]["annotations"] == {"provide-api-key": True, "final": True}


def test_redeploy_updates_the_action_but_no_trigger_or_rule(deploy: Deployer) -> None:
    ok(deploy())
    before = deploy.entities()
    run = ok(deploy())
    # The action is always updated (its code and bound parameters come from the repo); schedules do not churn.
    assert [c[:3] for c in run.changes] == [["wsk", "package", "update"], ["wsk", "action", "update"]]
    assert deploy.entities() == before
    assert f"unchanged: {trigger('mydb1')} (30 1 * * *)" in run.stderr


def test_a_changed_cron_updates_only_that_trigger(deploy: Deployer) -> None:
    ok(deploy())
    deploy.write_schedule({"mydb1": "0 3 * * 1-5", "mydb2": None})
    run = ok(deploy())
    assert run.changes[2:] == [
        ["wsk", "trigger", "update", trigger("mydb1"), "--param", "cron", "0 3 * * MON-FRI",
         "--param", "trigger_payload", '{"CLOUDANT_DB":"mydb1"}'],
    ]
    assert deploy.entities()["triggers"][trigger("mydb1")]["config"]["cron"] == "0 3 * * MON-FRI"
    assert ok(deploy()).changes[2:] == []  # the translated cron reads back as unchanged


def test_a_removed_database_loses_its_rule_then_its_trigger(deploy: Deployer) -> None:
    ok(deploy())
    deploy.write_schedule({"mydb1": "30 1 * * *"})
    run = ok(deploy())
    assert run.changes[2:] == [
        ["wsk", "rule", "delete", "--disable", rule("mydb2")],
        ["wsk", "trigger", "delete", trigger("mydb2")],
    ]
    state = deploy.entities()
    assert set(state["triggers"]) == {trigger("mydb1")} and set(state["rules"]) == {rule("mydb1")}


def test_other_triggers_and_rules_in_the_namespace_are_left_alone(deploy: Deployer) -> None:
    ok(deploy())
    state = deploy.entities()
    state["triggers"]["nightly-report"] = {"feed": FEED, "config": {"cron": "0 5 * * *", "payload": {}}}
    state["rules"]["nightly-report-rule"] = {"trigger": "nightly-report", "action": "cron/backup", "status": "active"}
    deploy.state.write_text(json.dumps(state))
    assert ok(deploy("wsk", "--uninstall")).changes[-1] == ["wsk", "package", "delete", "cron"]
    state = deploy.entities()
    assert set(state["triggers"]) == {"nightly-report"} and set(state["rules"]) == {"nightly-report-rule"}


def test_a_trigger_without_feed_is_replaced_and_its_rule_relinked(deploy: Deployer) -> None:
    # What a blind `trigger update` leaves behind: a trigger that never fires.
    ok(deploy())
    state = deploy.entities()
    state["triggers"][trigger("mydb1")] = {"feed": None, "params": {}}
    deploy.state.write_text(json.dumps(state))
    run = ok(deploy())
    assert run.changes[2:] == [
        ["wsk", "trigger", "delete", trigger("mydb1")],
        ["wsk", "trigger", "create", trigger("mydb1"), "--feed", FEED, "--param", "cron", "30 1 * * *",
         "--param", "trigger_payload", '{"CLOUDANT_DB":"mydb1"}'],
        ["wsk", "rule", "update", rule("mydb1"), trigger("mydb1"), "cron/backup"],
        # The recreated trigger's record does not know the rule: `rule update` leaves it inactive.
        ["wsk", "rule", "enable", rule("mydb1")],
    ]
    assert deploy.entities()["rules"][rule("mydb1")]["status"] == "active"
    assert ok(deploy()).changes[2:] == []


@pytest.mark.parametrize(("target", "cli"), [("wsk", ["wsk"]), ("ibmcloud-fn", ["ibmcloud", "fn"])])
def test_a_missing_trigger_is_created_and_its_rule_ends_active(deploy: Deployer, target: str, cli: list[str]) -> None:
    ok(deploy(target))
    # Someone deleted the trigger (its rule stays, inactive: OpenWhisk finds no trigger record for it).
    subprocess.run([str(FAKES / cli[0]), *cli[1:], "trigger", "delete", trigger("mydb2")], env=deploy.env(target),
                   check=True, capture_output=True)
    assert deploy.entities()["rules"][rule("mydb2")]["status"] == "inactive"
    run = ok(deploy(target))
    assert run.changes[2:] == [
        [*cli, "trigger", "create", trigger("mydb2"), "--feed", FEED, "--param", "cron", "5 0 * * *",
         "--param", "trigger_payload", '{"CLOUDANT_DB":"mydb2"}'],
        [*cli, "rule", "update", rule("mydb2"), trigger("mydb2"), "cron/backup"],
        [*cli, "rule", "enable", rule("mydb2")],
    ]
    assert {r["status"] for r in deploy.entities()["rules"].values()} == {"active"}


def test_a_disabled_rule_is_enabled_again(deploy: Deployer) -> None:
    ok(deploy())
    state = deploy.entities()
    state["rules"][rule("mydb2")]["status"] = "inactive"
    deploy.state.write_text(json.dumps(state))
    assert ok(deploy()).changes[2:] == [["wsk", "rule", "enable", rule("mydb2")]]


def test_dry_run_prints_the_commands_and_changes_nothing(deploy: Deployer) -> None:
    run = ok(deploy("wsk", "--dry-run"))
    assert run.changes == []
    assert deploy.entities() == {}
    printed = [shlex.split(line) for line in run.stdout.splitlines() if not line.startswith("#")]
    assert printed == first_deploy_commands(["wsk"], deploy, param_file(run.stdout))
    assert f"# bound parameters: {deploy.tmp / 'opts.json'}, and IAM_TOKEN_URL, DISABLE_TLS_VERIFY at their defaults" \
        in run.stdout.splitlines()

    ok(deploy())
    deploy.write_schedule({"mydb1": "45 2 * * *"})
    run = ok(deploy("wsk", "--dry-run"))
    assert run.changes == []
    printed = [line for line in run.stdout.splitlines() if not line.startswith("#")]
    assert printed[2:] == [
        f"wsk trigger update {trigger('mydb1')} --param cron '45 2 * * *' --param trigger_payload '{{\"CLOUDANT_DB\":\"mydb1\"}}'",
        f"wsk rule delete --disable {rule('mydb2')}",
        f"wsk trigger delete {trigger('mydb2')}",
    ]


def test_crons_are_translated_for_the_alarms_feed(deploy: Deployer) -> None:
    # node cron 1.x (the alarms feed) numbers months 0-11 and days 0-6: 12 and 7 fail, 1,4,7,10 are other months.
    schedule = {"sundays": "0 3 * * 7", "december": "0 2 1 12 *", "quarterly": "0 2 1 1,4,7,10 *",
                "weekend": "0 4 * * 5-7", "odd-months": "0 5 1 1-12/2 *", "every-3rd": "0 6 * */3 *"}
    deploy.write_schedule(schedule)
    ok(deploy())
    crons = {t["config"]["payload"]["CLOUDANT_DB"]: t["config"]["cron"] for t in deploy.entities()["triggers"].values()}
    assert crons == {"sundays": "0 3 * * SUN", "december": "0 2 1 DEC *", "quarterly": "0 2 1 JAN,APR,JUL,OCT *",
                     "weekend": "0 4 * * FRI-SAT,SUN", "odd-months": "0 5 1 JAN-DEC/2 *", "every-3rd": "0 6 * */3 *"}
    # What the feed's parser makes of them: the same months (0 = January) and days (0 = Sunday) as standard cron.
    fires = {db: fake_cli.node_cron_1x(cron) for db, cron in crons.items()}
    assert fires["sundays"][5] == {0}
    assert fires["december"][4] == {11}
    assert fires["quarterly"][4] == {0, 3, 6, 9}
    assert fires["weekend"][5] == {5, 6, 0}
    assert fires["odd-months"][4] == {0, 2, 4, 6, 8, 10}
    assert fires["every-3rd"][4] == {0, 3, 6, 9}
    for refused in ("0 3 * * 7", "0 2 1 12 *"):  # the fake feed refuses what node cron 1.x refuses
        with pytest.raises(ValueError, match="out of range"):
            fake_cli.node_cron_1x(refused)
    assert ok(deploy()).changes[2:] == []  # and reads back as unchanged


def test_code_engine_gets_day_of_week_7_as_0(deploy: Deployer) -> None:
    # robfig/cron (Knative PingSource) knows days 0-6 only; months 1-12 are standard there.
    deploy.write_schedule({"sundays": "0 3 * * 7", "december": "0 2 1 12 *", "weekend": "0 4 * * 5-7"})
    ok(deploy("code-engine"))
    subs = deploy.entities()["ce"]["subscriptions"]
    assert {json.loads(s["data"])["CLOUDANT_DB"]: s["schedule"] for s in subs.values()} == {
        "sundays": "0 3 * * 0", "december": "0 2 1 12 *", "weekend": "0 4 * * 5-6,0"}
    with pytest.raises(ValueError, match="above maximum"):
        fake_cli.robfig_standard("0 3 * * 7")


def test_a_cron_restricting_both_day_fields_is_refused_for_openwhisk(deploy: Deployer) -> None:
    deploy.write_schedule({"mydb1": "30 1 * * *", "mydb2": "0 2 1 * MON"})
    run = deploy("wsk")
    assert run.code == 2 and run.calls == []
    assert "the cron of 'mydb2' ('0 2 1 * MON') cannot be scheduled on wsk: day-of-month '1' and day-of-week 'MON'" in run.stderr
    ok(deploy("code-engine"))  # standard cron there: the 1st and every Monday


def test_dry_run_without_a_prebuilt_zip_shows_the_build(deploy: Deployer) -> None:
    run = ok(deploy("wsk", "--dry-run", ACTION_ZIP=""))
    lines = [line for line in run.stdout.splitlines() if not line.startswith("#")]
    assert lines[0] == "scripts/build-action.sh dist/action.zip"
    assert lines[2].startswith("wsk action update cron/backup dist/action.zip --kind python:3.11")


@pytest.mark.parametrize(("target", "cli"), [("wsk", ["wsk"]), ("ibmcloud-fn", ["ibmcloud", "fn"])])
def test_uninstall_removes_everything_and_needs_no_opts(deploy: Deployer, target: str, cli: list[str]) -> None:
    ok(deploy(target))
    (deploy.tmp / "opts.json").unlink()
    (deploy.tmp / "schedule.json").unlink()
    run = ok(deploy(target, "--uninstall"))
    assert run.changes == [
        [*cli, "rule", "delete", "--disable", rule("mydb1")],
        [*cli, "rule", "delete", "--disable", rule("mydb2")],
        [*cli, "trigger", "delete", trigger("mydb1")],
        [*cli, "trigger", "delete", trigger("mydb2")],
        [*cli, "action", "delete", "cron/backup"],
        [*cli, "package", "delete", "cron"],
    ]
    state = deploy.entities()
    assert not any(state[k] for k in ("packages", "actions", "triggers", "rules"))
    assert ok(deploy(target, "--uninstall")).changes == []  # twice is fine


def test_settings_come_from_the_environment(deploy: Deployer) -> None:
    run = ok(deploy("wsk", PACKAGE_NAME="nightly", ACTION_NAME="cloudant", ACTION_TIMEOUT_MS="120000",
                    ACTION_MEMORY_MB="256", ACTION_IMAGE="registry.example/backup:1.2.0"))
    assert run.changes[:2] == [
        ["wsk", "package", "update", "nightly"],
        ["wsk", "action", "update", "nightly/cloudant", str(deploy.zip), "--docker", "registry.example/backup:1.2.0",
         "--timeout", "120000", "--memory", "256", "--param-file", param_file(run),
         "--annotation", "provide-api-key", "true", "--annotation", "final", "true"],
    ]
    assert ["wsk", "rule", "update", "nightly-cloudant-rule--mydb1", "nightly-cloudant-trigger--mydb1", "nightly/cloudant"] in run.changes


def test_names_are_valid_for_any_database_name(deploy: Deployer) -> None:
    odd = ["a/b$c(d)+e-f", "a-b", "a/b", "x" * 238, "z_"]
    deploy.write_schedule(dict.fromkeys(odd))
    ok(deploy())  # the fake refuses invalid OpenWhisk names
    ok(deploy("code-engine"))  # and invalid Code Engine names
    state = deploy.entities()
    assert len(state["triggers"]) == len(state["rules"]) == len(state["ce"]["subscriptions"]) == len(odd)
    payloads = {t["config"]["payload"]["CLOUDANT_DB"] for t in state["triggers"].values()}
    assert payloads == set(odd)
    assert {json.loads(s["data"])["CLOUDANT_DB"] for s in state["ce"]["subscriptions"].values()} == set(odd)
    assert ok(deploy()).changes[2:] == []  # names are stable


@pytest.mark.parametrize("target", ["wsk", "code-engine"])
def test_every_database_and_database_lists_are_schedule_keys(deploy: Deployer, target: str) -> None:
    deploy.write_schedule({"*": "0 4 * * *", "mydb1,mydb2": None})
    ok(deploy(target))
    state = deploy.entities()
    if target == "code-engine":
        scheduled = {name: json.loads(s["data"]) for name, s in state["ce"]["subscriptions"].items()}
        assert scheduled["cloudant-backup---all"] == {"CLOUDANT_DB": "*"}
    else:
        scheduled = {name: t["config"]["payload"] for name, t in state["triggers"].items()}
        assert scheduled["cron-backup-trigger---all"] == {"CLOUDANT_DB": "*"}
        assert state["rules"]["cron-backup-rule---all"]["status"] == "active"
    assert sorted(p["CLOUDANT_DB"] for p in scheduled.values()) == ["*", "mydb1,mydb2"]
    assert ok(deploy(target)).changes[2:] == []  # package + action, or secret + job, are always updated
    deploy.write_schedule({"mydb1": None})  # the "*" schedule is pruned like any other
    ok(deploy(target))
    state = deploy.entities()
    names = state["ce"]["subscriptions"] if target == "code-engine" else state["triggers"]
    assert len(names) == 1


@pytest.mark.parametrize(("key", "message"), [("mydb1,,mydb2", "has an empty name"), ("mydb1,*", "'*' is not a valid"),
                                              ("mydb1,My", "'My' is not a valid")])
def test_bad_database_lists_fail_before_any_command(deploy: Deployer, key: str, message: str) -> None:
    deploy.write_schedule({key: None})
    run = deploy("wsk")
    assert run.code == 2 and message in run.stderr and run.calls == []


def test_a_python_older_than_3_10_is_refused_clearly(deploy: Deployer) -> None:
    # macOS's stock python3 is 3.9: the planner would die with a TypeError traceback.
    bin_dir = deploy.tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text('#!/bin/sh\n# a stand-in for Python 3.9\nprintf 3.9\n')
    (bin_dir / "python3").chmod(0o755)
    run = deploy("wsk", path=f"{bin_dir}:{FAKES}:/usr/bin:/bin")
    assert run.code == 2
    assert f"deploy: needs Python 3.10 or newer as python3, this is 3.9 ({bin_dir}/python3)" in run.stderr
    assert "Traceback" not in run.stderr and run.calls == []


def test_a_failing_list_stops_before_any_change(deploy: Deployer) -> None:
    run = deploy("wsk", FAKE_CLI_FAIL="trigger list")
    assert run.code != 0 and "simulated failure" in run.stderr
    assert run.changes == []


# ---- issue 14: bound parameters are final -----------------------------------------------------------------


@pytest.mark.parametrize(("target", "cli"), [("wsk", ["wsk"]), ("ibmcloud-fn", ["ibmcloud", "fn"])])
def test_the_action_is_final_so_no_invocation_or_trigger_overrides_a_bound_parameter(
        deploy: Deployer, target: str, cli: list[str]) -> None:
    ok(deploy(target))
    action = deploy.entities()["actions"]["cron/backup"]
    assert action["annotations"]["final"] is True
    assert "CLOUDANT_DB" not in action["params"]  # each trigger gives it: it must stay unbound

    def fake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(FAKES / cli[0]), *cli[1:], *args], env=deploy.env(target), capture_output=True,
                              text=True, check=False)

    elsewhere = {"IAM_TOKEN_URL": "https://attacker.example/identity/token", "CLOUDANT_URL": "https://attacker.example",
                 "COS_ENDPOINT": "attacker.example", "COS_BUCKET": "attackers-bucket", "DISABLE_TLS_VERIFY": "true"}
    for name, value in elsewhere.items():
        refused = fake("action", "invoke", "cron/backup", "--param", "CLOUDANT_DB", "mydb1", "--param", name, value)
        assert refused.returncode != 0 and "not allowed" in refused.stderr, name
        fake("trigger", "fire", trigger("mydb2"), "--param", name, value)
    assert fake("action", "invoke", "cron/backup", "--param", "CLOUDANT_DB", "mydb1").returncode == 0
    assert fake("trigger", "fire", trigger("mydb1")).returncode == 0  # the nightly run: the trigger's payload
    activations = deploy.entities()["activations"]
    ran = [a for a in activations if "params" in a]
    assert [a["params"]["CLOUDANT_DB"] for a in ran] == ["mydb1", "mydb1"]
    for activation in ran:
        assert activation["params"] == {**OPTS, **DEFAULTS, "CLOUDANT_DB": "mydb1"}
    fired = [a for a in activations if a.get("rule") == rule("mydb2")]
    assert len(fired) == len(elsewhere) and all("refused" in a for a in fired)


@pytest.mark.parametrize("target", ["wsk", "ibmcloud-fn"])
@pytest.mark.parametrize("name", ["CLOUDANT_DB", "CONTINUE_HOP"])
def test_parameters_each_invocation_gives_cannot_be_bound(deploy: Deployer, target: str, name: str) -> None:
    # Bound under `final`, CLOUDANT_DB would make every trigger's activation fail (and CONTINUE_HOP every continuation).
    deploy.write_opts({**OPTS, name: "mydb1" if name == "CLOUDANT_DB" else 1})
    run = deploy(target)
    assert run.code == 2 and run.calls == []
    assert f"{name} must not be in" in run.stderr


def test_opts_json_values_given_for_the_defaults_are_bound_as_they_are(deploy: Deployer) -> None:
    own = {"IAM_TOKEN_URL": "https://private-iam.example.com/identity/token", "DISABLE_TLS_VERIFY": True}
    deploy.write_opts({**OPTS, **own})
    run = ok(deploy())
    assert deploy.entities()["actions"]["cron/backup"]["params"] == {**OPTS, **own}
    assert f"bound parameters: {deploy.tmp / 'opts.json'}\n" in run.stderr.replace("deploy: ", "")


def test_a_typo_in_opts_json_is_a_warning_at_deploy_time(deploy: Deployer) -> None:
    deploy.write_opts({**OPTS, "KEEP_LST": 3})
    run = ok(deploy())
    warning = f"deploy: warning: {deploy.tmp / 'opts.json'}: unknown parameter KEEP_LST (did you mean KEEP_LAST?)"
    assert warning in run.stderr.splitlines()


# ---- Code Engine ------------------------------------------------------------------------------------------


def ce_job_args(image: list[str]) -> list[str]:
    return [*image, "--command", "python", "--argument=-m", "--argument=backup.job", "--env-from-secret",
            "cloudant-backup-params", "--cpu", "1", "--memory", "4G", "--maxexecutiontime", "7200", "--retrylimit", "1"]


def ce_subscription(verb: str, db: str, cron: str) -> list[str]:
    return ["ibmcloud", "ce", "subscription", "cron", verb, "--name", f"cloudant-backup--{db}", "--destination-type", "job",
            "--destination", "cloudant-backup", "--schedule", cron, "--data", json.dumps({"CLOUDANT_DB": db}, separators=(",", ":"))]


def env_file_of(call: list[str]) -> str:
    return call[call.index("--from-env-file") + 1]


def test_code_engine_first_deploy(deploy: Deployer) -> None:
    run = ok(deploy("code-engine"))
    assert run.calls[0] == ["ibmcloud", "ce", "project", "select", "--name", "backups"]
    secret = run.changes[0]
    assert secret[:6] == ["ibmcloud", "ce", "secret", "create", "--name", "cloudant-backup-params"]
    assert not Path(env_file_of(secret)).exists()  # the temp env file is gone after the run
    assert run.changes[1:] == [
        ["ibmcloud", "ce", "job", "create", "--name", "cloudant-backup",
         *ce_job_args(["--build-source", ".", "--build-strategy", "dockerfile"])],
        ce_subscription("create", "mydb1", "30 1 * * *"),
        ce_subscription("create", "mydb2", "5 0 * * *"),
    ]
    ce = deploy.entities()["ce"]
    assert ce["secrets"]["cloudant-backup-params"] == OPTS  # the fake also checked the env file was mode 0600
    assert ce["jobs"]["cloudant-backup"]["argument"] == ["-m", "backup.job"]


def test_code_engine_redeploy_changed_cron_removed_database_and_stale_secret_keys(deploy: Deployer) -> None:
    ok(deploy("code-engine", CE_IMAGE="icr.io/ns/backup:1.0"))
    run = ok(deploy("code-engine", CE_IMAGE="icr.io/ns/backup:1.0", CE_REGISTRY_SECRET="icr-pull"))
    assert [c[2:4] for c in run.changes] == [["secret", "update"], ["job", "update"]]  # no subscription churn
    assert run.changes[1] == ["ibmcloud", "ce", "job", "update", "--name", "cloudant-backup",
                              *ce_job_args(["--image", "icr.io/ns/backup:1.0", "--registry-secret", "icr-pull"])]

    deploy.write_schedule({"mydb1": "0 4 * * *"})
    deploy.write_opts({k: v for k, v in OPTS.items() if k != "COS_BUCKET"} | {"COS_BUCKET": "other-bucket", "PAGE_SIZE": 5000})
    run = ok(deploy("code-engine", CE_IMAGE="icr.io/ns/backup:1.0"))
    assert run.changes[2:] == [
        ce_subscription("update", "mydb1", "0 4 * * *"),
        ["ibmcloud", "ce", "subscription", "cron", "delete", "--name", "cloudant-backup--mydb2", "--force"],
    ]
    assert deploy.entities()["ce"]["secrets"]["cloudant-backup-params"]["PAGE_SIZE"] == "5000"

    deploy.write_opts({k: v for k, v in OPTS.items() if not k.startswith("COS_")}
                      | {"COS_ENDPOINT": OPTS["COS_ENDPOINT"], "COS_BUCKET": "b-1", "COS_ACCESS_KEY_ID": "AKIDEXAMPLE01",
                         "COS_SECRET_ACCESS_KEY": "hmac-secret-example-0001"})
    deploy.secret_values += ["hmac-secret-example-0001", "AKIDEXAMPLE01"]
    run = ok(deploy("code-engine", CE_IMAGE="icr.io/ns/backup:1.0"))
    # Keys gone from opts.json leave the secret too (IAM and HMAC keys side by side would fail every run).
    assert run.changes[1] == ["ibmcloud", "ce", "secret", "update", "--name", "cloudant-backup-params",
                              "--rm", "COS_API_KEY", "--rm", "COS_SERVICE_INSTANCE_ID", "--rm", "PAGE_SIZE"]
    assert set(deploy.entities()["ce"]["secrets"]["cloudant-backup-params"]) == {
        "CLOUDANT_URL", "CLOUDANT_IAM_KEY", "COS_ENDPOINT", "COS_BUCKET", "COS_ACCESS_KEY_ID", "COS_SECRET_ACCESS_KEY"}


def test_code_engine_dry_run_and_uninstall(deploy: Deployer) -> None:
    run = ok(deploy("code-engine", "--dry-run"))
    assert run.changes == [] and deploy.entities()["ce"]["secrets"] == {}
    lines = [line for line in run.stdout.splitlines() if not line.startswith("#")]
    assert re.fullmatch(r"ibmcloud ce secret create --name cloudant-backup-params --from-env-file /\S+/params\.env", lines[0])
    assert lines[1:] == [shlex.join(c) for c in [
        ["ibmcloud", "ce", "job", "create", "--name", "cloudant-backup",
         *ce_job_args(["--build-source", ".", "--build-strategy", "dockerfile"])],
        ce_subscription("create", "mydb1", "30 1 * * *"),
        ce_subscription("create", "mydb2", "5 0 * * *"),
    ]]

    ok(deploy("code-engine"))
    run = ok(deploy("code-engine", "--uninstall"))
    assert run.changes == [
        ["ibmcloud", "ce", "subscription", "cron", "delete", "--name", "cloudant-backup--mydb1", "--force"],
        ["ibmcloud", "ce", "subscription", "cron", "delete", "--name", "cloudant-backup--mydb2", "--force"],
        ["ibmcloud", "ce", "job", "delete", "--name", "cloudant-backup", "--force"],
        ["ibmcloud", "ce", "secret", "delete", "--name", "cloudant-backup-params", "--force"],
    ]
    ce = deploy.entities()["ce"]
    assert not (ce["secrets"] or ce["jobs"] or ce["subscriptions"])


# ---- issue 16: the status check and restore drills --------------------------------------------------------


STATUS = {"cron": "0 7 * * *", "databases": "*", "max_age_hours": 26}
STATUS_PAYLOAD = {"OPERATION": "status", "CLOUDANT_DB": "*", "MAX_AGE_HOURS": 26}
DRILLS = {"mydb1": "0 4 * * 0", "mydb2": None}  # mydb2: the first staggered drill, Sunday 03:00


def write_schedule_with(deploy: Deployer, **parts: Any) -> None:
    """The default backups plus STATUS and DRILLS; a part given as None is left out."""
    schedule = {"databases": {"mydb1": "30 1 * * *", "mydb2": None}, "status": STATUS, "drills": DRILLS, **parts}
    deploy.write_schedule(json.dumps({key: value for key, value in schedule.items() if value is not None}))


def compact(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def ow_schedule(cli: list[str], name: str, cron: str, payload: dict[str, Any]) -> list[list[str]]:
    """A new schedule's commands: its feed trigger, then its rule written and enabled (name: after trigger--)."""
    return [
        [*cli, "trigger", "create", trigger(name), "--feed", FEED, "--param", "cron", cron, "--param", "trigger_payload",
         compact(payload)],
        [*cli, "rule", "update", rule(name), trigger(name), "cron/backup"],
        [*cli, "rule", "enable", rule(name)],
    ]


def ce_schedule(verb: str, name: str, cron: str, payload: dict[str, Any]) -> list[str]:
    return ["ibmcloud", "ce", "subscription", "cron", verb, "--name", f"cloudant-backup--{name}", "--destination-type", "job",
            "--destination", "cloudant-backup", "--schedule", cron, "--data", compact(payload)]


def drill(db: str) -> dict[str, str]:
    return {"OPERATION": "drill", "CLOUDANT_DB": db}


@pytest.mark.parametrize(("target", "cli"), [("wsk", ["wsk"]), ("ibmcloud-fn", ["ibmcloud", "fn"])])
def test_the_status_check_and_each_drill_get_a_trigger_and_a_rule(deploy: Deployer, target: str, cli: list[str]) -> None:
    write_schedule_with(deploy)
    run = ok(deploy(target))
    assert run.changes == [
        *first_deploy_commands(cli, deploy, param_file(run)),
        *ow_schedule(cli, "-status", "0 7 * * *", STATUS_PAYLOAD),
        *ow_schedule(cli, "-drill--mydb1", "0 4 * * SUN", drill("mydb1")),
        *ow_schedule(cli, "-drill--mydb2", "0 3 * * SUN", drill("mydb2")),
    ]
    assert {r["status"] for r in deploy.entities()["rules"].values()} == {"active"}
    assert ok(deploy(target)).changes[2:] == []  # idempotent: payloads with numbers read back as unchanged


def test_status_and_drill_triggers_run_the_final_action_with_their_operation(deploy: Deployer) -> None:
    write_schedule_with(deploy)
    ok(deploy())
    for name in ("-status", "-drill--mydb2"):
        subprocess.run([str(FAKES / "wsk"), "trigger", "fire", trigger(name)], env=deploy.env("wsk"), check=True,
                       capture_output=True)
    activations = deploy.entities()["activations"]
    assert [(a["rule"], a.get("refused"), a["params"]) for a in activations] == [
        (rule("-status"), None, {**OPTS, **DEFAULTS, **STATUS_PAYLOAD}),
        (rule("-drill--mydb2"), None, {**OPTS, **DEFAULTS, **drill("mydb2")}),
    ]
    status, drilled = (load_config(a["params"]) for a in activations)  # what the action makes of them
    assert (status.operation, status.many, status.dbs, status.tune("MAX_AGE_HOURS")) == ("status", True, None, 26)
    assert (drilled.operation, drilled.db) == ("drill", "mydb2")


def test_code_engine_runs_the_status_check_and_drills_with_the_operation_in_the_subscription_data(deploy: Deployer) -> None:
    write_schedule_with(deploy)
    run = ok(deploy("code-engine"))
    assert run.changes[2:] == [
        ce_subscription("create", "mydb1", "30 1 * * *"),
        ce_subscription("create", "mydb2", "5 0 * * *"),
        ce_schedule("create", "-status", "0 7 * * *", STATUS_PAYLOAD),
        ce_schedule("create", "-drill--mydb1", "0 4 * * 0", drill("mydb1")),
        ce_schedule("create", "-drill--mydb2", "0 3 * * 0", drill("mydb2")),
    ]
    ce = deploy.entities()["ce"]
    secret = ce["secrets"]["cloudant-backup-params"]  # the job's environment, with the run's CE_DATA

    def job_config(name: str) -> Any:
        return load_config(build_args({**secret, "CE_DATA": ce["subscriptions"][f"cloudant-backup--{name}"]["data"]}))

    status, drilled, backed_up = job_config("-status"), job_config("-drill--mydb1"), job_config("mydb1")
    assert (status.operation, status.many, status.tune("MAX_AGE_HOURS")) == ("status", True, 26)
    assert (drilled.operation, drilled.db) == ("drill", "mydb1")
    assert (backed_up.operation, backed_up.db) == ("backup", "mydb1")
    assert ok(deploy("code-engine")).changes[2:] == []


@pytest.mark.parametrize("target", ["wsk", "code-engine"])
def test_a_changed_status_check_is_updated_and_removed_drills_and_status_are_deleted(deploy: Deployer, target: str) -> None:
    write_schedule_with(deploy)
    ok(deploy(target))
    write_schedule_with(deploy, status={**STATUS, "max_age_hours": 30}, drills={"mydb1": "0 4 * * 0"})
    run = ok(deploy(target))
    changed = {**STATUS_PAYLOAD, "MAX_AGE_HOURS": 30}
    if target == "code-engine":
        assert run.changes[2:] == [
            ce_schedule("update", "-status", "0 7 * * *", changed),
            ["ibmcloud", "ce", "subscription", "cron", "delete", "--name", "cloudant-backup---drill--mydb2", "--force"],
        ]
    else:
        assert run.changes[2:] == [
            ["wsk", "trigger", "update", trigger("-status"), "--param", "cron", "0 7 * * *", "--param", "trigger_payload",
             compact(changed)],
            ["wsk", "rule", "delete", "--disable", rule("-drill--mydb2")],
            ["wsk", "trigger", "delete", trigger("-drill--mydb2")],
        ]
    write_schedule_with(deploy, status=None, drills=None)
    ok(deploy(target))
    state = deploy.entities()
    left = state["ce"]["subscriptions"] if target == "code-engine" else {**state["triggers"], **state["rules"]}
    backups = (["cloudant-backup--mydb1", "cloudant-backup--mydb2"] if target == "code-engine"
               else [trigger("mydb1"), trigger("mydb2"), rule("mydb1"), rule("mydb2")])
    assert sorted(left) == sorted(backups)
    assert ok(deploy(target)).changes[2:] == []


@pytest.mark.parametrize("target", ["wsk", "code-engine"])
def test_databases_named_status_drill_or_all_keep_schedules_of_their_own(deploy: Deployer, target: str) -> None:
    deploy.write_schedule(json.dumps({"databases": dict.fromkeys(["status", "drill", "all", "*"]),
                                      "status": {"cron": "0 7 * * *"}, "drills": dict.fromkeys(["status", "drill"])}))
    ok(deploy(target))
    state = deploy.entities()
    if target == "code-engine":
        prefix = "cloudant-backup--"
        scheduled = {name: json.loads(s["data"]) for name, s in state["ce"]["subscriptions"].items()}
    else:
        prefix = "cron-backup-trigger--"
        scheduled = {name: t["config"]["payload"] for name, t in state["triggers"].items()}
        assert {r["trigger"] for r in state["rules"].values()} == set(scheduled)
    assert scheduled == {
        f"{prefix}status": {"CLOUDANT_DB": "status"}, f"{prefix}drill": {"CLOUDANT_DB": "drill"},
        f"{prefix}all": {"CLOUDANT_DB": "all"}, f"{prefix}-all": {"CLOUDANT_DB": "*"},
        f"{prefix}-status": {"OPERATION": "status", "CLOUDANT_DB": "*"},
        f"{prefix}-drill--status": drill("status"), f"{prefix}-drill--drill": drill("drill"),
    }


@pytest.mark.parametrize("target", ["wsk", "code-engine"])
def test_drills_of_any_database_name_get_valid_distinct_names(deploy: Deployer, target: str) -> None:
    odd = ["a/b$c(d)+e-f", "a-b", "a/b", "x" * 238, "z_"]
    deploy.write_schedule(json.dumps({"databases": dict.fromkeys(odd), "drills": dict.fromkeys(odd)}))
    ok(deploy(target))  # the fakes refuse invalid names
    state = deploy.entities()
    records = state["ce"]["subscriptions"].values() if target == "code-engine" else state["triggers"].values()
    payloads = [json.loads(r["data"]) if target == "code-engine" else r["config"]["payload"] for r in records]
    assert sorted(p["CLOUDANT_DB"] for p in payloads if p.get("OPERATION") == "drill") == sorted(odd)
    assert len(payloads) == 2 * len(odd)


@pytest.mark.parametrize("target", ["wsk", "code-engine"])
def test_uninstall_removes_the_status_check_and_drills_too(deploy: Deployer, target: str) -> None:
    write_schedule_with(deploy)
    ok(deploy(target))
    run = ok(deploy(target, "--uninstall"))
    deleted = {call[call.index("--name") + 1] if "--name" in call else call[-1] for call in run.changes}
    state = deploy.entities()
    if target == "code-engine":
        assert {"cloudant-backup---status", "cloudant-backup---drill--mydb1", "cloudant-backup---drill--mydb2"} <= deleted
        assert state["ce"]["subscriptions"] == {}
    else:
        assert {trigger("-status"), rule("-status"), trigger("-drill--mydb2"), rule("-drill--mydb2")} <= deleted
        assert state["triggers"] == {} and state["rules"] == {}


def test_drills_alone_can_be_deployed_to_code_engine_beside_backups_elsewhere(deploy: Deployer) -> None:
    # Backups on OpenWhisk, drills (which take the time of a restore) as Code Engine jobs.
    deploy.write_schedule(json.dumps({"drills": {"mydb1": None}}))
    run = ok(deploy("code-engine"))
    assert run.changes[2:] == [ce_schedule("create", "-drill--mydb1", "0 3 * * 0", drill("mydb1"))]


def test_the_example_schedule_deploys_backups_the_status_check_and_drills(deploy: Deployer) -> None:
    example = json.loads((ROOT / "schedule.example.json").read_text())
    assert set(example) == {"databases", "status", "drills"}
    deploy.write_schedule(json.dumps(example))
    for target in ("wsk", "code-engine"):
        assert "warning" not in ok(deploy(target)).stderr
    state = deploy.entities()
    assert len(state["triggers"]) == len(state["rules"]) == len(state["ce"]["subscriptions"]) == \
        len(example["databases"]) + 1 + len(example["drills"])


def test_a_status_check_or_drill_of_databases_this_file_backs_up_nowhere_is_a_warning(deploy: Deployer) -> None:
    write_schedule_with(deploy, drills={"mydb1": None, "mydb3": None})
    run = ok(deploy())
    path = deploy.tmp / "schedule.json"
    assert [line for line in run.stderr.splitlines() if "warning" in line] == [
        f'deploy: warning: {path}: the status check covers every database of the account ("*"), but only mydb1, mydb2 '
        "are backed up: the others will be stale every day (set status.databases to those, or to null: every database "
        "with backups in the bucket)",
        f"deploy: warning: {path}: the drill of 'mydb3': no backup schedule in this file takes 'mydb3'",
    ]
    write_schedule_with(deploy, status={"cron": "0 7 * * *", "databases": "mydb2,mydb1"}, drills={"mydb1": None})
    assert "warning" not in ok(deploy()).stderr
    deploy.write_schedule(json.dumps({"databases": {"*": None}, "status": {"cron": "0 7 * * *"}, "drills": {"mydb3": None}}))
    assert "warning" not in ok(deploy()).stderr


@pytest.mark.parametrize(("bound", "message"), [
    ({"OPERATION": "backup"}, "OPERATION must not be in it: the trigger of each status and drill schedule gives it"),
    ({"MAX_AGE_HOURS": 30}, "MAX_AGE_HOURS must not be in it: the trigger of each status schedule gives it"),
])
def test_what_a_status_or_drill_trigger_gives_cannot_be_bound_on_openwhisk(
        deploy: Deployer, bound: dict[str, Any], message: str) -> None:
    # Under `final` such a trigger's every activation would be refused; on Code Engine CE_DATA wins, so it may be.
    write_schedule_with(deploy)
    deploy.write_opts({**OPTS, **bound})
    run = deploy("wsk")
    assert run.code == 2 and run.calls == []
    assert f"{deploy.tmp / 'opts.json'}: {message}" in run.stderr
    ok(deploy("code-engine"))


def test_a_bound_max_age_is_fine_when_the_status_check_gives_none(deploy: Deployer) -> None:
    write_schedule_with(deploy, status={"cron": "0 7 * * *"})
    deploy.write_opts({**OPTS, "MAX_AGE_HOURS": 30})
    ok(deploy("wsk"))
    assert deploy.entities()["triggers"][trigger("-status")]["config"]["payload"] == {"OPERATION": "status", "CLOUDANT_DB": "*"}


def test_a_drill_bound_to_fail_fails_the_deploy(deploy: Deployer) -> None:
    # The status of named databases reads only COS, so these opts.json pass for it; a drill restores into Cloudant.
    deploy.write_schedule(json.dumps({"status": {"cron": "0 7 * * *", "databases": "mydb1"}, "drills": {"mydb1": None}}))
    deploy.write_opts({k: v for k, v in OPTS.items() if not k.startswith("CLOUDANT_")})
    run = deploy("code-engine")
    assert run.code == 2 and run.calls == []
    assert (f"{deploy.tmp / 'schedule.json'}: the drill of 'mydb1' with {deploy.tmp / 'opts.json'}: invalid parameters: "
            "CLOUDANT_URL is missing") in run.stderr
    deploy.write_schedule(json.dumps({"status": {"cron": "0 7 * * *", "databases": "mydb1"}}))
    ok(deploy("code-engine"))


# ---- inputs are checked before anything runs --------------------------------------------------------------


BAD_INPUTS = [
    ("opts", "{not json", "opts.json is not valid JSON"),
    ("opts", '["CLOUDANT_URL"]', "must hold a JSON object"),
    ("opts", json.dumps({**OPTS, "COS_BUCKET": {"nested": 1}}), "COS_BUCKET must be a string"),
    ("opts", json.dumps({k: v for k, v in OPTS.items() if k != "COS_BUCKET"}), "COS_BUCKET is missing"),
    ("opts", json.dumps({**OPTS, "CLOUDANT_URL": f"account:{SECRETS['COS_API_KEY']}@host"}), "CLOUDANT_URL must start with"),
    ("schedule", '{"databases": {"mydb1": "5 0 * *"', "schedule.json is not valid JSON"),
    ("schedule", '{"databases": {}}', "at least one"),
    ("schedule", '{"mydb1": "5 0 * * *"}', "must look like"),
    ("schedule", '{"databases": {"mydb1": "5 0 * *"}}', "needs 5 fields"),
    ("schedule", '{"databases": {"mydb1": "60 0 * * *"}}', "minute field '60': 60 is outside 0-59"),
    ("schedule", '{"databases": {"mydb1": "5 24 * * *"}}', "hour field"),
    ("schedule", '{"databases": {"mydb1": "*/0 * * * *"}}', "step '0'"),
    ("schedule", '{"databases": {"mydb1": "5 0 31 13 *"}}', "month field '13'"),
    ("schedule", '{"databases": {"mydb1": "5 0 * * 8"}}', "day-of-week field"),
    ("schedule", '{"databases": {"mydb1": "5 0 10-2 * *"}}', "runs backwards"),
    ("schedule", '{"databases": {"mydb1": "0 0 0 * * *"}}', "needs 5 fields"),
    ("schedule", '{"databases": {"mydb1": 5}}', "must be a string"),
    ("schedule", '{"databases": {"MyDB": null}}', "not a valid database name"),
    ("schedule", '{"databases": {"mydb1": null}, "drill": {}}', "schedule.json: unknown key 'drill'"),
    ("schedule", '{"status": "0 7 * * *"}', "schedule.json: status must be an object"),
    ("schedule", '{"status": {"databases": "*"}}', "schedule.json: status.cron is missing"),
    ("schedule", '{"status": {"cron": "0 7 * *"}}', "schedule.json: the status cron ('0 7 * *') is invalid: needs 5 fields"),
    ("schedule", '{"status": {"cron": null}}', "schedule.json: status.cron is missing"),
    ("schedule", '{"status": {"cron": 7}}', "schedule.json: the status cron must be a string"),
    ("schedule", '{"status": {"cron": "0 7 * * *", "max_age": 26}}', "schedule.json: status has an unknown key 'max_age'"),
    ("schedule", '{"status": {"cron": "0 7 * * *", "databases": "My"}}', "schedule.json: status.databases: database 'My' is"),
    ("schedule", '{"status": {"cron": "0 7 * * *", "databases": "a,,b"}}', "schedule.json: status.databases: the database list"),
    ("schedule", '{"status": {"cron": "0 7 * * *", "databases": ["a"]}}', "schedule.json: status.databases must be"),
    ("schedule", '{"status": {"cron": "0 7 * * *", "max_age_hours": 0}}', "schedule.json: status.max_age_hours must be a whole "
     "number of hours from 1 to 8760, got 0"),
    ("schedule", '{"status": {"cron": "0 7 * * *", "max_age_hours": "26"}}', 'status.max_age_hours must be a whole number of '
     'hours from 1 to 8760, got "26"'),
    ("schedule", '{"drills": ["mydb1"]}', "schedule.json: drills must be an object"),
    ("schedule", '{"drills": {"mydb1": "0 3 * * 8"}}', "schedule.json: the drill cron of 'mydb1' ('0 3 * * 8') is invalid: "
     "day-of-week field '8'"),
    ("schedule", '{"drills": {"mydb1": 3}}', "schedule.json: the drill cron of 'mydb1' must be a string"),
    ("schedule", '{"drills": {"*": null}}', "schedule.json: drills: '*' must be one database"),
    ("schedule", '{"drills": {"mydb1,mydb2": null}}', "schedule.json: drills: 'mydb1,mydb2' must be one database"),
    ("schedule", '{"drills": {"MyDB": null}}', "schedule.json: drills: database 'MyDB' is not a valid database name"),
    ("schedule", '{"databases": {}, "drills": {}}', "at least one database, or a \"status\" or \"drills\" schedule"),
]


@pytest.mark.parametrize("target", ["wsk", "code-engine"])
@pytest.mark.parametrize(("which", "content", "message"), BAD_INPUTS, ids=[f"{w}-{m}" for w, _, m in BAD_INPUTS])
def test_bad_input_fails_before_any_command(deploy: Deployer, target: str, which: str, content: str, message: str) -> None:
    (deploy.write_opts if which == "opts" else deploy.write_schedule)(content)
    run = deploy(target)
    assert run.code == 2
    assert message in run.stderr
    assert run.calls == []  # not even a read


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("no-opts", {}, "opts.json not found: copy opts.example.json"),
        ("no-schedule", {}, "schedule.json not found: copy schedule.example.json"),
        ("no-cli", {}, "wsk not found on PATH"),
        ("", {"DEPLOY_TARGET": "lambda"}, "DEPLOY_TARGET must be wsk, ibmcloud-fn or code-engine"),
        ("", {"ACTION_TIMEOUT_MS": "5m"}, "ACTION_TIMEOUT_MS must be a whole number"),
        ("", {"ACTION_MEMORY_MB": "64"}, "ACTION_MEMORY_MB must be a whole number >= 128"),
        ("", {"PACKAGE_NAME": "a/b"}, "PACKAGE_NAME must be"),
        ("", {"ACTION_ZIP": "/nonexistent/action.zip"}, "ACTION_ZIP /nonexistent/action.zip does not exist"),
        ("", {"DEPLOY_TARGET": "code-engine", "CE_JOB": "Backup_Job"}, "CE_JOB must be lowercase"),
        ("", {"DEPLOY_TARGET": "code-engine", "CE_MEMORY": "lots"}, "CE_MEMORY must be like 4G"),
        ("bad-arg", {}, "unknown argument '--force'"),
    ],
)
def test_bad_setup_fails_before_any_command(deploy: Deployer, setup: str, extra: dict[str, str], message: str) -> None:
    if setup == "no-opts":
        (deploy.tmp / "opts.json").unlink()
    if setup == "no-schedule":
        (deploy.tmp / "schedule.json").unlink()
    extra = dict(extra)
    target = extra.pop("DEPLOY_TARGET", "wsk")
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin" if setup == "no-cli" else None
    if setup == "no-cli" and any(Path(d, "wsk").exists() for d in path.split(":")):
        pytest.skip("a real wsk is installed on this machine")
    run = deploy(target, *(["--force"] if setup == "bad-arg" else []), path=path, **extra)
    assert run.code == 2
    assert message in run.stderr
    assert run.calls == []


# ---- the planner's pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["5 0 * * *", "*/15 * * * *", "0 2 1-7 * mon", "0 0,12 * JAN-MAR 1-5", "0 3 * * 7", " 5  0 * * * "])
def test_valid_crons(cron: str) -> None:
    assert deploy_plan.check_cron(cron) == " ".join(cron.split())


def standard_cron_values(field: str, low: int, high: int, names: tuple[str, ...], offset: int) -> set[int]:
    """What standard (Vixie) cron selects with one field, counted as node cron counts (month - 1; day 7 is 0)."""
    def number(text: str) -> int:
        return names.index(text.lower()) + offset if text.lower() in names else int(text)

    values: set[int] = set()
    for item in field.split(","):
        body, _, step = item.partition("/")
        first, _, last = body.partition("-")
        start, end = (low, high) if body == "*" else (number(first), number(last or first))
        values.update(v - offset for v in range(start, end + 1, int(step or 1)))
    return {v % 7 for v in values} if offset == 0 else values


@pytest.mark.parametrize("cron", ["0 0 * * 7", "0 0 1 12 *", "0 0 1 1,4,7,10 *", "0 0 * * 5-7", "0 0 * * 1-7/2", "0 0 * * 3-7/2",
                                  "0 0 * * 0-7", "0 0 * * 0-7/7", "0 0 * * 6-7", "0 0 * * */2", "0 0 * * */3", "0 0 * */2 *",
                                  "0 0 1 1-12/3 *", "0 0 1 2-11/4 *", "0 0 * JAN-MAR 1-5", "0 0 * Dec sun,7", "0 0 1 2,12 *"])
def test_alarm_crons_select_what_standard_cron_does(cron: str) -> None:
    translated = deploy_plan.target_cron(cron, "wsk")
    fields = fake_cli.node_cron_1x(translated)  # raises where the alarms feed would refuse it
    _, _, _, month, dow = cron.split()
    assert fields[4] == standard_cron_values(month, 1, 12, fake_cli.MONTHS, 1), translated
    assert fields[5] == standard_cron_values(dow, 0, 7, fake_cli.DAYS, 0), translated
    assert translated.split()[:3] == cron.split()[:3]


def test_staggered_times_are_five_minutes_apart_from_0005() -> None:
    assert [deploy_plan.staggered_cron(i) for i in (0, 1, 11, 12)] == ["5 0 * * *", "10 0 * * *", "0 1 * * *", "5 1 * * *"]


def test_staggered_drills_are_on_sunday_ten_minutes_apart_from_0300() -> None:
    assert [deploy_plan.staggered_drill_cron(i) for i in (0, 1, 6, 125, 126)] == [
        "0 3 * * 0", "10 3 * * 0", "0 4 * * 0", "50 23 * * 0", "0 0 * * 0"]


@pytest.mark.parametrize(("target", "pattern"), [("wsk", r"[A-Za-z0-9_.-]{1,256}"),
                                                 ("code-engine", r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")])
def test_schedule_names_never_collide_and_stay_valid(target: str, pattern: str) -> None:
    entries = [("backup", db) for db in ("status", "drill", "all", "a/b", "*", "x" * 238)]
    entries += [("status", "")] + [("drill", db) for db in ("status", "drill", "all", "a/b", "a-b", "x" * 238)]
    names = [deploy_plan.schedule_name("cloudant-backup--", key, target, kind) for kind, key in entries]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(pattern, name) for name in names), names


def test_entity_names_keep_safe_names_and_hash_the_rest() -> None:
    assert deploy_plan.entity_name("p--", "mydb_1", "wsk") == "p--mydb_1"
    assert deploy_plan.entity_name("p--", "db-", "wsk") == "p--db-"
    assert deploy_plan.entity_name("p--", "mydb_1", "code-engine").startswith("p--mydb-1-")
    assert deploy_plan.entity_name("p--", "a/b", "wsk") != deploy_plan.entity_name("p--", "a-b", "wsk")
    for target, limit, pattern in (("wsk", 256, r"[A-Za-z0-9_.-]+"), ("code-engine", 63, r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")):
        for db in ("a/b$c(d)+e-f", "x" * 238, "d(", "e-"):
            name = deploy_plan.entity_name("cloudant-backup--", db, target)
            assert len(name) <= limit and re.fullmatch(pattern, name), name


def test_trigger_state_reads_feed_and_plain_triggers() -> None:
    feed = 'ok: invoked /whisk.system/alarms/alarm with id 1\n{"activationId": "1", "name": "alarm", "annotations": [],' \
           ' "response": {"result": {"config": {"cron": "5 0 * * *", "payload": {"CLOUDANT_DB": "a"}}}}}'
    assert deploy_plan.trigger_state(feed, "5 0 * * *", '{"CLOUDANT_DB":"a"}') == "same"
    assert deploy_plan.trigger_state(feed, "6 0 * * *", '{"CLOUDANT_DB":"a"}') == "changed"
    assert deploy_plan.trigger_state(feed, "5 0 * * *", '{"CLOUDANT_DB":"b"}') == "changed"
    plain = 'ok: got trigger t\n{"name": "t", "annotations": [], "parameters": []}'
    assert deploy_plan.trigger_state(plain, "5 0 * * *", "{}") == "plain"
    assert deploy_plan.trigger_state("ok: invoked, but the feed did not answer", "5 0 * * *", "{}") == "unknown"


def test_env_file_is_private(tmp_path: Path) -> None:
    (tmp_path / "opts.json").write_text(json.dumps({"A": "x=y", "B": True, "C": 7}))
    deploy_plan.write_env_file(str(tmp_path / "opts.json"), str(tmp_path / "env"))
    assert (tmp_path / "env").read_text() == "A=x=y\nB=true\nC=7\n"
    assert os.stat(tmp_path / "env").st_mode & 0o077 == 0


@pytest.mark.parametrize("ignore_file", [".ceignore", ".dockerignore"])
def test_the_image_build_context_never_holds_opts_json(tmp_path: Path, ignore_file: str) -> None:
    # .ceignore has .gitignore syntax; .dockerignore is written so that both readings agree.
    for path in ("Dockerfile", "requirements.txt", "__main__.py", "backup/job.py", "opts.json", "schedule.json",
                 "backup/__pycache__/job.cpython-311.pyc", ".venv/bin/python", "dist/action.zip", "tests/test_job.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    (tmp_path / ".gitignore").write_text((ROOT / ignore_file).read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    listed = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout.split()
    assert sorted(listed) == ["Dockerfile", "__main__.py", "backup/job.py", "requirements.txt"]
