"""Issue 14 against the real local servers: a short password (`full`) never changes a result's or a log line's
identifiers, kinds, hashes or times, while an error text quoting it is still masked."""

from __future__ import annotations

import json

import pytest

from backup import redaction
from backup.keys import manifest_key
from backup.redaction import MASK, register
from tests.helpers import cos_params, couch_params, keys_in, load_docs, run_main, sample_docs

pytestmark = pytest.mark.integration


def test_a_short_password_leaves_a_real_backup_result_and_its_log_exact(couch_open, db_name, seaweed, bucket, s3_client,
                                                                        monkeypatch):
    monkeypatch.setattr(redaction, "_known", set(redaction._known))  # the registry is global: this must not outlive it
    load_docs(couch_open, db_name, sample_docs(filler=3))
    register("full")  # a (poor) password that is also a backup's kind
    params = {**couch_params(couch_open, db_name), **cos_params(seaweed, bucket)}
    result, log = run_main(params)
    assert result["ok"] and result["complete"] and result["kind"] == "full", result
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=manifest_key(result["key"]))["Body"].read())
    assert result["sha256"] == manifest["sha256"] and result["key"] in keys_in(s3_client, bucket)
    (started,) = log.events("backup_started")
    (finished,) = log.events("backup_finished")
    assert started["kind"] == "full" and finished["kind"] == "full" and finished["sha256"] == manifest["sha256"]
    assert MASK not in log.text

    register(manifest["sha256"][20:25])  # a password that happens to occur in the hash
    verified, verify_log = run_main({**params, "OPERATION": "verify", "COS_KEY": result["key"]})
    assert verified["sha256"] == manifest["sha256"] and verified["kind"] == "full", verified
    assert log.events("backup_finished")[0]["sha256"] == manifest["sha256"]
    assert MASK not in json.dumps(verified) and MASK not in verify_log.text

    failed, failed_log = run_main({**params, "CLOUDANT_DB": "full-of-nothing"})
    assert failed["kind"] == "cloudant" and f"{MASK}-of-nothing" in failed["error"], failed
    assert "full" not in failed["error"]
    (line,) = failed_log.events("failed")
    assert line["kind"] == "cloudant" and line["level"] == "error" and "full" not in line["error"]
