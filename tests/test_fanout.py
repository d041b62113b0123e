"""Every database of an account (CLOUDANT_DB="*" or "a,b,c"), against real servers: one after the other from
the CLI, one activation per database on OpenWhisk (a fake OpenWhisk API), each database's outcome listed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from backup.errors import CosError
from backup.keys import manifest_key
from devstack import PouchServer
from tests.helpers import (
    API_KEY,
    OUTPUTS,
    CapturedLog,
    cos_params,
    couch_params,
    incomplete_uploads,
    keys_in,
    live_docs,
    load_docs,
    run_main,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
# The account's user databases and their doc counts; "_private" is not a system database but starts with "_".
USER_DBS = {"alpha": 5, "beta": 3, "gamma-1": 1}
SYSTEM_DBS = ("_private", "_replicator", "_users")  # pouchdb-server has _users and _replicator from the start


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PouchServer]:
    """A dedicated pouchdb-server (no admin) holding only this module's databases."""
    with PouchServer(tmp_path_factory.mktemp("account")) as server:
        server.start()
        for name, count in USER_DBS.items():
            load_docs(server, name, [{"_id": f"{name}-{i}", "i": i} for i in range(count)])
        server.create_db("_private")
        server.bulk_docs("_private", [{"_id": "secret-plans"}])
        yield server


@pytest.fixture
def params(account, seaweed, bucket):
    return {**couch_params(account, "*"), **cos_params(seaweed, bucket)}


def _cli(params: dict[str, Any], *argv: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("__OW_")}
    env.update({k: str(v) for k, v in params.items()})
    proc = subprocess.run([sys.executable, "-m", "backup", *argv], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc.returncode, json.loads(proc.stdout)


def _assert_backed_up(s3: Any, bucket: str, outcome: dict[str, Any], docs: int) -> None:
    name = outcome["database"]
    assert outcome["complete"] is True and outcome["docs"] == docs and outcome["kind"] == "full", outcome
    assert outcome["key"].startswith(f"{name}_") and outcome["key"].endswith("Z_backup.txt.gz")  # gzip by default
    assert {outcome["key"], manifest_key(outcome["key"])} <= set(keys_in(s3, bucket))


def test_every_database_one_after_the_other_from_the_cli(account, bucket, s3_client, params):
    code, result = _cli(params, "backup", "--db", "*")
    assert code == 0, result
    assert result["ok"] is True and result["fanout"] == "sequential" and result["failed"] == [] and "error" not in result
    outcomes = {o["database"]: o for o in result["databases"]}
    assert sorted(outcomes) == sorted(USER_DBS) and result["count"] == len(USER_DBS)  # "_..." ones are left out
    for name, docs in USER_DBS.items():
        _assert_backed_up(s3_client, bucket, outcomes[name], docs)
    assert len(keys_in(s3_client, bucket)) == 2 * len(USER_DBS) and incomplete_uploads(s3_client, bucket) == []

    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": outcomes["alpha"]["key"],
                            "CLOUDANT_DB": "alpha-copy", "CREATE_TARGET": True})
    assert restored["ok"] and live_docs(account, "alpha-copy") == live_docs(account, "alpha"), restored
    requests.delete(f"{account.url}/alpha-copy", timeout=30)


def test_a_list_of_databases_through_main(account, bucket, s3_client, params):
    result, log = run_main({**params, "CLOUDANT_DB": " beta , alpha "})
    assert result["ok"] and [o["database"] for o in result["databases"]] == ["beta", "alpha"], result
    for outcome in result["databases"]:
        _assert_backed_up(s3_client, bucket, outcome, USER_DBS[outcome["database"]])
    assert len(log.events("backup_finished")) == 2 and log.events("fanout_finished")[0]["mode"] == "sequential"


def test_a_missing_database_fails_alone_and_the_exit_code_says_so(account, bucket, s3_client, params):
    code, result = _cli(params, "backup", "--db", "alpha,no-such-db,beta")
    assert code != 0 and code == 1, (code, result)
    assert result["ok"] is False and result["failed"] == ["no-such-db"], result
    assert result["error"] == "1 of 3 database backups failed: no-such-db"
    outcomes = {o["database"]: o for o in result["databases"]}
    assert list(outcomes) == ["alpha", "no-such-db", "beta"]
    assert outcomes["no-such-db"]["kind"] == "cloudant" and "'no-such-db'" in outcomes["no-such-db"]["error"]
    assert "404" in outcomes["no-such-db"]["error"] and "key" not in outcomes["no-such-db"]
    for name in ("alpha", "beta"):
        _assert_backed_up(s3_client, bucket, outcomes[name], USER_DBS[name])
    assert not any(k.startswith("no-such-db") for k in keys_in(s3_client, bucket))

    through_main, _ = run_main({**params, "CLOUDANT_DB": "no-such-db,other-missing"})
    assert through_main["failed"] == ["no-such-db", "other-missing"] and "error" in through_main


def test_a_crash_in_one_database_leaves_the_others_backed_up_and_every_message_redacted(account, bucket, s3_client,
                                                                                      params, monkeypatch):
    """An unexpected exception (a bug) in one database's backup: the others still run. Its text, and that of
    another database's error, quote the HMAC secret key here: both are masked in the result."""
    import backup.backup

    real = backup.backup.run_backup  # fanout imports it when it runs

    def crashing_on_beta(config: Any, log: Any, deadline: Any = None) -> dict[str, Any]:
        if config.db == "beta":
            raise RuntimeError(f"a bug while holding {params['COS_SECRET_ACCESS_KEY']}")
        if config.db == "gamma-1":  # an error this tool raises on purpose: its text goes into the result as is
            raise CosError(f"an SDK message quoting {params['COS_SECRET_ACCESS_KEY']}")
        return real(config, log, deadline=deadline)

    monkeypatch.setattr(backup.backup, "run_backup", crashing_on_beta)
    result, log = run_main({**params, "CLOUDANT_DB": "alpha,beta,gamma-1"})
    assert result["ok"] is False and result["failed"] == ["beta", "gamma-1"], result
    outcomes = {o["database"]: o for o in result["databases"]}
    assert outcomes["beta"]["kind"] == "internal" and "unexpected RuntimeError: a bug while holding" in outcomes["beta"]["error"]
    assert outcomes["gamma-1"] == {"database": "gamma-1", "error": "an SDK message quoting ****", "kind": "cos"}
    assert params["COS_SECRET_ACCESS_KEY"] not in json.dumps(result) + log.text
    _assert_backed_up(s3_client, bucket, outcomes["alpha"], USER_DBS["alpha"])


def test_an_invalid_name_in_the_list_is_a_config_error_before_anything_runs(account, bucket, s3_client, params):
    result, _ = run_main({**params, "CLOUDANT_DB": "alpha,Bad Name"})
    assert result["kind"] == "config" and "'Bad Name' is not a valid database name" in result["error"]
    assert keys_in(s3_client, bucket) == []


def test_system_databases_only_when_asked(account, bucket, s3_client, params):
    result, _ = run_main({**params, "INCLUDE_SYSTEM_DBS": "true"})
    assert result["ok"], result
    outcomes = {o["database"]: o for o in result["databases"]}
    assert sorted(outcomes) == sorted([*USER_DBS, *SYSTEM_DBS])
    assert outcomes["_private"]["complete"] and outcomes["_private"]["docs"] == 1


def test_backups_of_underscore_databases_are_listed_and_pruned(account, bucket, s3_client, params):
    for _ in range(2):
        result, _ = run_main({**params, "INCLUDE_SYSTEM_DBS": "true", "KEEP_LAST": 1})
        assert result["ok"], result
    objects = [k for k in keys_in(s3_client, bucket) if not k.endswith(".manifest.json")]
    per_db = {name: [k for k in objects if k.startswith(f"{name}_2")] for name in [*USER_DBS, *SYSTEM_DBS]}
    assert all(len(keys) == 1 for name, keys in per_db.items() if name in USER_DBS)  # works for user databases
    listed, _ = run_main({**params, "OPERATION": "list", "CLOUDANT_DB": None})
    assert {b["database"] for b in listed["backups"]} == {*USER_DBS, *SYSTEM_DBS}
    assert all(len(keys) == 1 for keys in per_db.values()), per_db


def test_time_budget_is_for_the_whole_run_not_per_database(account, bucket, s3_client, params):
    # alpha's backup is made to take longer than the whole budget; beta must then not get a fresh one.
    log = CapturedLog(hooks={"backup_finished": lambda fields: time.sleep(2.5) if fields["database"] == "alpha" else None})
    result, _ = run_main({**params, "CLOUDANT_DB": "alpha,beta", "TIME_BUDGET": 2, "SAFETY_MARGIN": 1}, log)
    outcomes = {o["database"]: o for o in result["databases"]}
    assert outcomes["alpha"]["complete"] is True
    assert outcomes["beta"].get("complete") is not True, outcomes["beta"]


# -- on OpenWhisk: one activation per database


SECRET_PARAMS = ("CLOUDANT_PASSWORD", "CLOUDANT_USERNAME", "CLOUDANT_IAM_KEY", "COS_SECRET_ACCESS_KEY", "COS_API_KEY",
                 "COS_ACCESS_KEY_ID")




def _assert_no_secret(payload: dict[str, Any], params: dict[str, Any]) -> None:
    assert not set(payload) & set(SECRET_PARAMS), payload
    text = json.dumps(payload)
    for name in SECRET_PARAMS:
        if params.get(name):
            assert str(params[name]) not in text, name
    assert "CLOUDANT_URL" not in payload  # may carry credentials; the platform's bound parameters have it


def test_on_openwhisk_every_database_gets_its_own_activation(account, bucket, s3_client, params, openwhisk):
    args = {**params, "PART_SIZE_MB": 5, "BACKUP_MODE": "incremental", "COS_PREFIX": "nightly/"}
    result, _ = run_main(args)
    assert result["ok"] and result["fanout"] == "openwhisk" and result["failed"] == [], result
    assert sorted(o["database"] for o in result["databases"]) == sorted(USER_DBS)
    by_db = {call["body"]["CLOUDANT_DB"]: call for call in openwhisk.calls}
    assert sorted(by_db) == sorted(USER_DBS) and len(openwhisk.calls) == len(USER_DBS)
    for outcome in result["databases"]:
        call = by_db[outcome["database"]]
        assert outcome["activation_id"] == call["activation_id"]
        assert call["path"] == "/api/v1/namespaces/NS/actions/PKG/ACTION" and call["query"] == {"blocking": ["false"]}
        assert call["authorization"] == "Basic " + base64.b64encode(API_KEY.encode()).decode()
        payload = call["body"]
        _assert_no_secret(payload, args)
        assert payload["PART_SIZE_MB"] == 5 and payload["BACKUP_MODE"] == "incremental"
        assert payload["COS_PREFIX"] == "nightly/" and payload["COS_BUCKET"] == bucket
    assert keys_in(s3_client, bucket) == []  # the activations do the work, not this one


def test_on_openwhisk_system_databases_get_activations_that_pass_config(account, bucket, s3_client, params, openwhisk):
    result, _ = run_main({**params, "INCLUDE_SYSTEM_DBS": "true"})
    assert result["ok"] and result["fanout"] == "openwhisk" and result["failed"] == [], result
    payloads = {call["body"]["CLOUDANT_DB"]: call["body"] for call in openwhisk.calls}
    assert sorted(payloads) == sorted([*USER_DBS, *SYSTEM_DBS])
    # Each activation runs with the action's bound parameters, the payload on top: run the system databases' own.
    for name in ("_users", "_replicator"):
        child, _ = run_main({**params, **payloads[name]})
        assert child.get("kind") != "config" and child["complete"] is True and child["database"] == name, child
        assert child["key"].startswith(f"{name}_") and child["key"] in keys_in(s3_client, bucket)
        assert child["docs"] == len(live_docs(account, name))
    # pouchdb-server let this module create "_private"; CouchDB refuses every "_" name but its system databases,
    # and so does the activation's config check.
    child, _ = run_main({**params, **payloads["_private"]})
    assert child["kind"] == "config" and "'_private' is not a valid database name" in child["error"], child


def test_on_openwhisk_a_list_fans_out_without_secrets(couch, seaweed, bucket, s3_client, openwhisk):
    args = {**couch_params(couch, "one,two"), **cos_params(seaweed, bucket)}
    assert args.get("CLOUDANT_PASSWORD")  # the session's server has an admin: a secret to keep in
    result, log = run_main(args)
    assert result["ok"] and [o["database"] for o in result["databases"]] == ["one", "two"], result
    assert [c["body"]["CLOUDANT_DB"] for c in openwhisk.calls] == ["one", "two"]
    for call in openwhisk.calls:
        _assert_no_secret(call["body"], args)
    assert args["CLOUDANT_PASSWORD"] not in log.text and args["COS_SECRET_ACCESS_KEY"] not in log.text
