"""Backups bigger than one invocation, against real servers: stop before the deadline, store a checkpoint,
continue the same multipart upload in the next invocation, and end with the bytes a one-shot backup writes.

Also: a process killed mid-run loses nothing, a stale checkpoint is abandoned, a held lease keeps a
second writer out, and CONTINUE_ASYNC hands the rest to the next activation (a fake OpenWhisk API).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backup.config import host_of
from backup.keys import backup_key, checkpoint_key, manifest_key
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
    object_body,
    run_at_once,
    run_main,
    sample_docs,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
# ~27 MB in 24,005 docs (awkward ids, a design doc and a 500 KB doc included): five parts of 5 MiB + the rest.
BIG_FILLER = 24_000
BIG_DOCS = BIG_FILLER + 5
# Smaller pages read a little slower: several invocations even on a fast machine; bytes do not depend on it.
# Uncompressed: a continued backup must end byte for byte as the one-shot one (a gzip backup stores one member per
# invocation: its plain text is the same, see test_a_gzip_backup_over_short_invocations_has_the_one_shot_text),
# and the parts and tails checked here are of plain lines (the sample docs compress to less than one part).
TUNING = {"PART_SIZE_MB": 5, "PAGE_SIZE": 500, "COMPRESSION": "none"}
# One second of work per invocation: the budget is 2 s and the backup stops 1 s before its end.
SHORT = {"TIME_BUDGET": 2, "SAFETY_MARGIN": 1}
MAX_INVOCATIONS = 80


@pytest.fixture(scope="module")
def big_db(couch: Any) -> str:
    """Loaded once; the tests only read it."""
    name = f"cp-{uuid.uuid4().hex[:12]}"
    load_docs(couch, name, sample_docs(filler=BIG_FILLER, filler_bytes=1000))
    return name


@pytest.fixture(scope="module")
def one_shot(couch: Any, seaweed: Any, big_db: str) -> Iterator[dict[str, Any]]:
    """A one-shot backup of big_db (no deadline): the bytes every continued backup must reproduce."""
    s3 = seaweed.client()
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    result, _ = run_main({**couch_params(couch, big_db), **cos_params(seaweed, bucket), **TUNING})
    assert result.get("complete") is True and result["invocations"] == 1 and result["parts"] >= 5, result
    body = s3.get_object(Bucket=bucket, Key=result["key"])["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key(result["key"]))["Body"].read())
    yield {"result": result, "body": body, "manifest": manifest}
    with contextlib.suppress(Exception):
        s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def params(couch: Any, seaweed: Any, big_db: str, bucket: str) -> dict[str, Any]:
    return {**couch_params(couch, big_db), **cos_params(seaweed, bucket), **TUNING}


@pytest.fixture
def cp_key(couch: Any, big_db: str) -> str:
    """Where big_db's checkpoint is (its key names the source server)."""
    return checkpoint_key("", big_db, host_of(couch.url))


def _body(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _json(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(_body(s3, bucket, key))


def _assert_same_bytes_as_one_shot(body: bytes, one_shot: dict[str, Any]) -> None:
    """All lines after the metadata line identical; the metadata line differs only by its start time."""
    baseline = one_shot["body"]
    lines, expected = body.split(b"\n"), baseline.split(b"\n")
    assert len(lines) == len(expected)
    assert lines[1:] == expected[1:]
    meta, expected_meta = json.loads(lines[0]), json.loads(expected[0])
    assert meta.pop("started") != expected_meta.pop("started")  # a different backup...
    assert meta == expected_meta  # ...of the same data: same database, update_seq, doc_count, kind
    assert len(body) == len(baseline)


def _assert_manifest_matches_one_shot(manifest: dict[str, Any], one_shot: dict[str, Any], invocations: int) -> None:
    expected = one_shot["manifest"]
    assert manifest["invocations"] == invocations
    assert [p["size"] for p in manifest["parts"]] == [p["size"] for p in expected["parts"]]
    # Part 1 holds the metadata line (its start time differs); every other part is the same bytes.
    assert [p["sha256"] for p in manifest["parts"][1:]] == [p["sha256"] for p in expected["parts"][1:]]
    for name in ("docs", "lines", "bytes", "update_seq", "seq", "last_id", "kind"):
        assert manifest[name] == expected[name], name


def _assert_no_checkpoint_left(s3: Any, bucket: str, key: str) -> None:
    assert sorted(keys_in(s3, bucket)) == sorted([key, manifest_key(key)])
    assert incomplete_uploads(s3, bucket) == []


def _assert_checkpoint_state(s3: Any, bucket: str, db: str, result: dict[str, Any], part_mb: int = 5) -> dict[str, Any]:
    """After a checkpointed run: the checkpoint (lease released) and tail are in the bucket, consistent."""
    [key] = [k for k in keys_in(s3, bucket) if k.startswith(f"{db}.checkpoint.") and k.endswith(".json")]
    cp = _json(s3, bucket, key)
    assert cp["key"] == result["key"] and cp["upload_id"] and cp["invocations"] == result["invocations"]
    assert cp["lease_owner"] is None and cp["lease_until"] == 0
    assert len(cp["parts"]) == result["parts"]
    assert all(p["size"] >= 5 * MIB for p in cp["parts"])  # none is the last part yet: all >= 5 MiB
    names = keys_in(s3, bucket)
    assert result["key"] not in names and manifest_key(result["key"]) not in names  # no object yet
    if cp["tail"]:
        tail = _body(s3, bucket, cp["tail"]["key"])
        assert len(tail) == cp["tail"]["size"] and 0 < len(tail) < part_mb * MIB and tail.endswith(b"\n")
        assert cp["tail"]["docs"] == result["docs"]
    elif cp["parts"]:
        assert cp["parts"][-1]["docs"] == result["docs"]
    uploads = incomplete_uploads(s3, bucket)
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [(result["key"], cp["upload_id"])]
    return cp


def _until_complete(invoke: Callable[[int], dict[str, Any]], check: Callable[[dict[str, Any]], None] | None = None,
                    limit: int = MAX_INVOCATIONS, done_before: int = 0) -> list[dict[str, Any]]:
    """Invoke until the backup reports complete (each incomplete result passed to check).

    `done_before`: invocations of this backup that already stored their checkpoint.
    """
    results: list[dict[str, Any]] = []
    for number in range(1, limit + 1):
        result = invoke(number)
        assert result.get("ok") is True, result
        results.append(result)
        if result["complete"]:
            return results
        assert result["invocations"] == done_before + len(results)
        if check:
            check(result)
    raise AssertionError(f"not complete after {limit} invocations: {results[-3:]}")


def test_a_backup_over_many_short_invocations_ends_as_the_one_shot_bytes(couch, big_db, bucket, s3_client, params,
                                                                          one_shot):
    def check(result: dict[str, Any]) -> None:
        assert "stopped before the deadline" in result["detail"]
        _assert_checkpoint_state(s3_client, bucket, big_db, result)

    logs: list[CapturedLog] = []

    def invoke(_: int) -> dict[str, Any]:
        result, log = run_main({**params, **SHORT, "PAGE_SIZE": 50})  # many small pages: several invocations
        logs.append(log)
        return result

    results = _until_complete(invoke, check)
    final = results[-1]
    print(f"\ncheckpointed backup of {BIG_DOCS} docs ({final['bytes']} bytes, {final['parts']} parts): "
          f"{len(results)} invocations, docs after each: {[r['docs'] for r in results]}")
    assert len(results) >= 3, results
    assert final["invocations"] == len(results) and final["docs"] == BIG_DOCS
    assert {r["key"] for r in results} == {final["key"]}
    docs = [r["docs"] for r in results]
    assert docs == sorted(docs)
    assert all(log.events("backup_resumed") for log in logs[1:]) and not logs[0].events("backup_resumed")
    assert [log.events("backup_resumed")[0]["invocation"] for log in logs[1:]] == list(range(2, len(results) + 1))

    _assert_no_checkpoint_left(s3_client, bucket, final["key"])
    _assert_same_bytes_as_one_shot(_body(s3_client, bucket, final["key"]), one_shot)
    _assert_manifest_matches_one_shot(_json(s3_client, bucket, manifest_key(final["key"])), one_shot, len(results))

    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": final["key"]})
    assert verified["ok"] and verified["docs"] == BIG_DOCS and verified["sha256"] == final["sha256"], verified

    target = f"{big_db}-restored"
    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": final["key"], "CLOUDANT_DB": target,
                            "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 2000})
    assert restored["ok"] and restored["docs"] == BIG_DOCS, restored
    assert live_docs(couch, target) == live_docs(couch, big_db)


def test_a_gzip_backup_over_short_invocations_has_the_one_shot_text(couch, big_db, bucket, s3_client, params,
                                                                    one_shot):
    """The default codec: one gzip member per invocation that wrote data, so not the one-shot bytes, but the
    same plain text (read by Python's gzip), and it verifies and restores."""
    gzip_params = {k: v for k, v in params.items() if k != "COMPRESSION"}
    results = _until_complete(lambda _: run_main({**gzip_params, **SHORT, "PAGE_SIZE": 50})[0])
    final = results[-1]
    assert len(results) >= 2 and final["docs"] == BIG_DOCS and final["key"].endswith("Z_backup.txt.gz"), results
    assert final["compression"] == "gzip" and final["plain_bytes"] == len(one_shot["body"]), final
    _assert_no_checkpoint_left(s3_client, bucket, final["key"])
    _assert_same_bytes_as_one_shot(object_body(s3_client, bucket, final["key"]), one_shot)
    manifest = _json(s3_client, bucket, manifest_key(final["key"]))
    assert manifest["compression"] == "gzip" and manifest["invocations"] == len(results)
    assert 2 <= len(manifest["segments"]) <= len(results), manifest["segments"]
    assert manifest["plain_bytes"] == len(one_shot["body"]) and manifest["docs"] == BIG_DOCS
    verified, _ = run_main({**gzip_params, "OPERATION": "verify", "COS_KEY": final["key"]})
    assert verified["ok"] and verified["docs"] == BIG_DOCS and verified["content_checked"] is True, verified
    target = f"{big_db}-gz-restored"
    restored, _ = run_main({**gzip_params, "OPERATION": "restore", "COS_KEY": final["key"], "CLOUDANT_DB": target,
                            "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 2000})
    assert restored["ok"] and restored["docs"] == BIG_DOCS, restored
    assert live_docs(couch, target) == live_docs(couch, big_db)


def test_ow_deadline_in_the_environment_stops_and_continues_through_main(big_db, bucket, s3_client, params, one_shot,
                                                                        monkeypatch):
    def invoke(number: int) -> dict[str, Any]:
        # As the OpenWhisk runtime sets them for each activation: epoch milliseconds, a string.
        monkeypatch.setenv("__OW_DEADLINE", str(int((time.time() + 2) * 1000)))
        monkeypatch.setenv("__OW_ACTIVATION_ID", f"activation-{number}")
        # No TIME_BUDGET: the default margin (at least 1 s) applies. Parts bigger than the data: everything
        # read so far travels in the tail from one invocation to the next, and the object is one part.
        result, _ = run_main({**params, "PART_SIZE_MB": 50})
        return result

    def check(result: dict[str, Any]) -> None:
        cp = _assert_checkpoint_state(s3_client, bucket, big_db, result, part_mb=50)
        # (on a loaded machine an invocation may reach its deadline before reading anything: no tail yet)
        assert not cp["parts"] and (cp["tail"] is None or cp["tail"]["docs"] == result["docs"])

    results = _until_complete(invoke, check)
    print(f"\n__OW_DEADLINE = now + 2 s: {len(results)} invocations, docs after each: {[r['docs'] for r in results]}")
    assert len(results) >= 2 and results[-1]["invocations"] == len(results) and results[-1]["parts"] == 1
    _assert_no_checkpoint_left(s3_client, bucket, results[-1]["key"])
    _assert_same_bytes_as_one_shot(_body(s3_client, bucket, results[-1]["key"]), one_shot)

    monkeypatch.delenv("__OW_DEADLINE")
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": results[-1]["key"]})
    assert verified["ok"] and verified["docs"] == BIG_DOCS


# -- processes killed mid-run


def _cli_env(params: dict[str, Any], **extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("__OW_")}
    env.update({k: str(v) for k, v in {**params, **extra}.items()})
    return env


def _cli_backup(params: dict[str, Any], **extra: Any) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "backup", "backup"], env=_cli_env(params, **extra), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    OUTPUTS.extend([proc.stdout, proc.stderr])
    return proc.returncode, json.loads(proc.stdout)


def _start_and_kill_at(params: dict[str, Any], event: str, after: str | None = None, **extra: Any) -> tuple[int, list[dict]]:
    """Start `python -m backup backup`, SIGKILL it as soon as it logs `event` (after `after`, when given)."""
    proc = subprocess.Popen([sys.executable, "-m", "backup", "backup"], env=_cli_env(params, **extra), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[dict] = []
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        armed = after is None
        for line in proc.stderr:
            lines.append(line)
            record = json.loads(line)
            seen.append(record)
            armed = armed or record["event"] == after
            if armed and record["event"] == event:
                proc.send_signal(signal.SIGKILL)
                break
        else:
            raise AssertionError(f"the backup ended before logging {event}: {lines[-5:]}")
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        OUTPUTS.extend(lines)
        if proc.stdout is not None:
            OUTPUTS.append(proc.stdout.read())
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    return proc.pid, seen


def test_a_process_killed_mid_run_loses_nothing(cp_key, big_db, bucket, s3_client, params, one_shot):
    code, first = _cli_backup(params, **SHORT)
    assert code == 0 and first["complete"] is False, first
    before = _assert_checkpoint_state(s3_client, bucket, big_db, first)

    # The second invocation resumes, uploads a part beyond the checkpoint, and dies without a word.
    pid, seen = _start_and_kill_at(params, "part_uploaded", after="backup_resumed", TIME_BUDGET=8, SAFETY_MARGIN=1)
    assert any(r["event"] == "backup_resumed" for r in seen)
    held = _json(s3_client, bucket, cp_key)
    assert held["lease_owner"].startswith(f"pid{pid}-") and held["lease_until"] > time.time()
    assert held["parts"] == before["parts"] and held["upload_id"] == before["upload_id"]  # its progress was never saved
    parts = s3_client.list_parts(Bucket=bucket, Key=first["key"], UploadId=held["upload_id"]).get("Parts", [])
    assert len(parts) > len(before["parts"])  # it really wrote into the upload before it died

    # Until its deadline the dead invocation's lease holds: a clear refusal, nothing written.
    asked_at = time.time()
    code, next_run = _cli_backup(params, **SHORT)
    if code != 0 or asked_at < held["lease_until"] - 1:  # the usual case; a very slow machine may be past the lease
        assert code == 4 and next_run["kind"] == "cos", next_run
        assert f"another invocation ({held['lease_owner']}) is writing this backup until" in next_run["error"]
        assert "not starting a second writer" in next_run["error"] and f"'{big_db}'" in next_run["error"]
        assert _json(s3_client, bucket, cp_key) == held
        time.sleep(max(0.0, held["lease_until"] - time.time()) + 0.5)
        code, next_run = _cli_backup(params, **SHORT)  # the lease ran out: continued from the last checkpoint
    assert code == 0 and next_run["key"] == first["key"], next_run
    assert next_run["invocations"] == 2  # the killed one never counted
    if next_run["complete"]:
        final = next_run
    else:
        _assert_checkpoint_state(s3_client, bucket, big_db, next_run)
        code, final = _cli_backup(params)  # no budget: to the end
        assert code == 0 and final["complete"] and final["invocations"] == 3, final
    assert final["key"] == first["key"] and final["docs"] == BIG_DOCS
    _assert_no_checkpoint_left(s3_client, bucket, final["key"])
    _assert_same_bytes_as_one_shot(_body(s3_client, bucket, final["key"]), one_shot)
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": final["key"]})
    assert verified["ok"] and verified["docs"] == BIG_DOCS, verified


def test_a_first_invocation_killed_before_its_checkpoint_leaves_no_billed_upload(cp_key, big_db, bucket, s3_client,
                                                                                 params):
    _start_and_kill_at(params, "part_uploaded", TIME_BUDGET=4, SAFETY_MARGIN=1)
    assert len(incomplete_uploads(s3_client, bucket)) == 1  # the dead process's upload
    # Past the dead invocation's lease (its deadline, as its checkpoint says: however slow its start-up was).
    lease_until = _json(s3_client, bucket, cp_key)["lease_until"]
    time.sleep(max(0.0, lease_until + 0.5 - time.time()))
    result, _ = run_main(params)
    assert result.get("complete") is True and result["docs"] == BIG_DOCS, result
    assert incomplete_uploads(s3_client, bucket) == []


# -- stale checkpoints and leases


def test_a_checkpoint_older_than_the_max_age_is_abandoned_for_a_fresh_backup(cp_key, big_db, bucket, s3_client, params, one_shot):
    # One second of work may not fill a 5 MiB part on a loaded machine: go on until a part is up (the checkpoint
    # continued, never completed).
    for _ in range(5):
        stopped, _ = run_main({**params, **SHORT})
        assert stopped["complete"] is False, stopped
        if stopped["parts"] >= 1:
            break
    assert stopped["parts"] >= 1, stopped
    cp = _assert_checkpoint_state(s3_client, bucket, big_db, stopped)
    cp["created"] = time.time() - 3 * 86400  # CHECKPOINT_MAX_AGE_HOURS defaults to 48
    s3_client.put_object(Bucket=bucket, Key=cp_key, Body=json.dumps(cp).encode())

    result, log = run_main(params)
    assert result["ok"] and result["complete"] is True and result["invocations"] == 1, result
    assert result["key"] != stopped["key"] and result["docs"] == BIG_DOCS
    [abandoned] = log.events("checkpoint_abandoned")
    assert abandoned["key"] == stopped["key"] and abandoned["level"] == "warning"
    assert [e["key"] for e in log.events("upload_aborted")] == [stopped["key"]]
    _assert_no_checkpoint_left(s3_client, bucket, result["key"])  # the old upload is gone, no tail
    _assert_same_bytes_as_one_shot(_body(s3_client, bucket, result["key"]), one_shot)


def test_checkpoint_max_age_is_a_parameter(cp_key, big_db, bucket, s3_client, params):
    stopped, _ = run_at_once(params)
    assert stopped["complete"] is False
    cp = _json(s3_client, bucket, cp_key)
    cp["created"] = time.time() - 2 * 3600
    s3_client.put_object(Bucket=bucket, Key=cp_key, Body=json.dumps(cp).encode())

    kept, log = run_at_once({**params, "CHECKPOINT_MAX_AGE_HOURS": 3})  # 2 h old, 3 h allowed: continued
    assert kept["key"] == stopped["key"] and kept["invocations"] == 2 and not log.events("checkpoint_abandoned")
    fresh, log = run_at_once({**params, "CHECKPOINT_MAX_AGE_HOURS": 1})  # 1 h allowed: abandoned
    assert fresh["key"] != stopped["key"] and fresh["invocations"] == 1 and log.events("checkpoint_abandoned")
    assert [u["Key"] for u in incomplete_uploads(s3_client, bucket)] == [fresh["key"]]


def _bucket_state(s3: Any, bucket: str) -> dict[str, Any]:
    objects = {o["Key"]: (o["ETag"], o["Size"]) for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    uploads = {}
    for upload in incomplete_uploads(s3, bucket):
        parts = s3.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])
        uploads[upload["UploadId"]] = (upload["Key"], [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts])
    return {"objects": objects, "uploads": uploads}


def test_a_held_lease_keeps_a_second_writer_out_and_nothing_is_written(cp_key, big_db, bucket, s3_client, params):
    stopped, _ = run_main({**params, **SHORT})
    assert stopped["complete"] is False
    cp = _json(s3_client, bucket, cp_key)
    cp["lease_owner"], cp["lease_until"] = "someone-else", time.time() + 60
    s3_client.put_object(Bucket=bucket, Key=cp_key, Body=json.dumps(cp).encode())
    before = _bucket_state(s3_client, bucket)

    refused, log = run_main(params)
    assert refused["kind"] == "cos", refused
    assert "another invocation (someone-else) is writing this backup until" in refused["error"]
    assert f"backing up '{big_db}'" in refused["error"] and "not starting a second writer" in refused["error"]
    assert not log.events("backup_resumed") and not log.events("part_uploaded")
    assert _bucket_state(s3_client, bucket) == before
    assert _json(s3_client, bucket, cp_key) == cp

    cp["lease_until"] = time.time() - 1  # the other writer's lease ran out: the backup continues
    s3_client.put_object(Bucket=bucket, Key=cp_key, Body=json.dumps(cp).encode())
    result, _ = run_main(params)
    assert result["complete"] is True and result["key"] == stopped["key"] and result["invocations"] == 2, result
    _assert_no_checkpoint_left(s3_client, bucket, result["key"])


def test_a_stale_checkpoint_whose_lease_is_live_is_not_abandoned(cp_key, big_db, bucket, s3_client, params):
    stopped, _ = run_at_once(params)
    cp = _json(s3_client, bucket, cp_key)
    cp["created"] = time.time() - 3 * 86400
    cp["lease_owner"], cp["lease_until"] = "someone-else", time.time() + 60
    s3_client.put_object(Bucket=bucket, Key=cp_key, Body=json.dumps(cp).encode())
    before = _bucket_state(s3_client, bucket)

    result, _ = run_main(params)
    assert result.get("kind") == "cos" and "someone-else" in result.get("error", ""), result
    assert _bucket_state(s3_client, bucket) == before


def test_a_failing_resumed_invocation_leaves_another_backups_checkpoint_alone(cp_key, big_db, bucket, s3_client, params):
    stopped, _ = run_at_once(params)
    mine = _json(s3_client, bucket, cp_key)
    other_key = backup_key("", big_db, datetime.now(UTC))  # e.g. a fresh backup that abandoned ours as stale
    other = {**mine, "key": other_key, "lease_owner": None, "lease_until": 0,
             "upload_id": s3_client.create_multipart_upload(Bucket=bucket, Key=other_key)["UploadId"]}

    def another_backup_checkpoints_meanwhile(_: dict[str, Any]) -> None:
        s3_client.put_object(Bucket=bucket, Key=cp_key, Body=json.dumps(other).encode())

    log = CapturedLog(hooks={"backup_resumed": another_backup_checkpoints_meanwhile})
    result, _ = run_at_once({**params}, log)
    assert result.get("kind") == "cos" and "checkpointed meanwhile" in result.get("error", ""), result
    assert [u["UploadId"] for u in incomplete_uploads(s3_client, bucket)] == [other["upload_id"]]  # its own is aborted
    assert _json(s3_client, bucket, cp_key) == other


def test_a_crash_between_writing_the_tail_and_the_checkpoint_leaves_the_old_pair_valid(cp_key, big_db, bucket, s3_client,
                                                                                       params, one_shot):
    # Parts bigger than the data: every checkpoint has a tail (a deadline often falls during a part upload,
    # which leaves none). Small pages: two invocations do not finish the backup.
    args = {**params, **SHORT, "PART_SIZE_MB": 50, "PAGE_SIZE": 50}
    first, _ = run_main(args)
    old = _assert_checkpoint_state(s3_client, bucket, big_db, first, part_mb=50)
    old_tail = _body(s3_client, bucket, old["tail"]["key"])
    second, _ = run_main(args)
    if second["complete"]:
        pytest.skip("two invocations finished the backup: no second checkpoint")
    new = _assert_checkpoint_state(s3_client, bucket, big_db, second, part_mb=50)
    assert old["tail"] and new["tail"] and new["tail"]["size"] > old["tail"]["size"]
    # The state a crash after the new tail's write and before the checkpoint's leaves: both tails, old checkpoint
    # (the old tail is deleted only after the new checkpoint is written).
    assert new["tail"]["key"] != old["tail"]["key"]
    s3_client.put_object(Bucket=bucket, Key=old["tail"]["key"], Body=old_tail)
    s3_client.put_object(Bucket=bucket, Key=cp_key, Body=json.dumps(old).encode())

    result, _ = run_main(params)
    assert result.get("complete") is True, result
    _assert_same_bytes_as_one_shot(_body(s3_client, bucket, result["key"]), one_shot)


def test_a_failed_tail_read_does_not_keep_the_lease(big_db, bucket, s3_client, params):
    stopped, _ = run_main({**params, **SHORT, "PART_SIZE_MB": 50})  # no part yet: all of it is in the tail
    cp = _assert_checkpoint_state(s3_client, bucket, big_db, stopped, part_mb=50)
    assert cp["tail"] and not cp["parts"]
    tail = _body(s3_client, bucket, cp["tail"]["key"])
    s3_client.delete_object(Bucket=bucket, Key=cp["tail"]["key"])  # e.g. a failed read of it
    failed, _ = run_main(params)
    assert failed.get("kind") == "cos" and cp["tail"]["key"] in failed.get("error", ""), failed

    s3_client.put_object(Bucket=bucket, Key=cp["tail"]["key"], Body=tail)  # COS is fine again
    result, _ = run_main(params)
    assert result.get("complete") is True, result


def test_an_unreadable_checkpoint_is_a_clear_error(cp_key, big_db, bucket, s3_client, params):
    s3_client.put_object(Bucket=bucket, Key=cp_key, Body=b'{"format": "something else"}')
    result, _ = run_main(params)
    assert result["kind"] == "cos" and "is not a readable checkpoint" in result["error"], result
    assert cp_key in result["error"] and "delete it" in result["error"]
    assert incomplete_uploads(s3_client, bucket) == []


# -- CONTINUE_ASYNC: the next hop is another activation of the same action




SECRET_PARAMS = ("CLOUDANT_PASSWORD", "CLOUDANT_USERNAME", "CLOUDANT_IAM_KEY", "COS_SECRET_ACCESS_KEY", "COS_API_KEY",
                 "COS_ACCESS_KEY_ID")


def _assert_invoke_call(call: dict[str, Any], params: dict[str, Any]) -> None:
    assert call["path"] == "/api/v1/namespaces/NS/actions/PKG/ACTION"
    assert call["query"] == {"blocking": ["false"]}
    assert call["authorization"] == "Basic " + base64.b64encode(API_KEY.encode()).decode()
    payload = call["body"]
    assert not set(payload) & set(SECRET_PARAMS), payload
    text = json.dumps(payload)
    for name in SECRET_PARAMS:
        if params.get(name):
            assert str(params[name]) not in text, name
    assert "CLOUDANT_URL" not in payload  # may carry credentials; the platform's bound parameters have it


def test_continue_async_hands_over_hop_by_hop_without_secrets(big_db, bucket, s3_client, params, one_shot, openwhisk):
    bound = {**params, **SHORT, "CONTINUE_ASYNC": "true"}  # what the action has bound (secrets included)

    def invoke(number: int) -> dict[str, Any]:
        payload = openwhisk.calls[-1]["body"] if number > 1 else {}
        assert len(openwhisk.calls) == number - 1
        result, _ = run_main({**bound, **payload})  # the platform merges bound parameters and the payload
        if not result.get("complete"):
            call = openwhisk.calls[-1]
            assert result["continued_by"] == {"hop": number, "activation_id": call["activation_id"]}
            _assert_invoke_call(call, bound)
            assert call["body"]["CLOUDANT_DB"] == big_db and call["body"]["CONTINUE_HOP"] == number
            assert call["body"]["CONTINUE_ASYNC"] == "true" and call["body"]["TIME_BUDGET"] == 2
        return result

    results = _until_complete(invoke)
    print(f"\nCONTINUE_ASYNC: {len(results)} hops")
    assert len(results) >= 2 and "continued_by" not in results[-1]
    assert len(openwhisk.calls) == len(results) - 1
    _assert_no_checkpoint_left(s3_client, bucket, results[-1]["key"])
    _assert_same_bytes_as_one_shot(_body(s3_client, bucket, results[-1]["key"]), one_shot)


def test_continue_async_stops_at_max_hops_and_never_fails_the_backup(cp_key, big_db, bucket, s3_client, params, openwhisk):
    bound = {**params, "CONTINUE_ASYNC": True, "MAX_HOPS": 3}
    at_limit, log = run_at_once({**bound, "CONTINUE_HOP": 3})
    assert at_limit["ok"] and at_limit["complete"] is False, at_limit
    assert at_limit["continued_by"]["hop"] == 3 and "MAX_HOPS" in at_limit["continued_by"]["stopped"]
    assert log.events("hop_limit_reached") and openwhisk.calls == []

    below, _ = run_at_once({**bound, "CONTINUE_HOP": 2})
    assert below["continued_by"]["hop"] == 3 and len(openwhisk.calls) == 1
    assert openwhisk.calls[0]["body"]["CONTINUE_HOP"] == 3 and openwhisk.calls[0]["body"]["MAX_HOPS"] == 3

    none_allowed, _ = run_at_once({**params, "CONTINUE_ASYNC": True, "MAX_HOPS": 0})
    assert "stopped" in none_allowed["continued_by"] and len(openwhisk.calls) == 1

    openwhisk.status = 500  # the platform refuses: the checkpoint stands, the next scheduled run continues
    refused, log = run_at_once(bound)
    assert refused["ok"] and refused["complete"] is False, refused
    assert refused["continued_by"]["hop"] == 1 and "HTTP 500" in refused["continued_by"]["error"]
    assert log.events("continue_failed")
    assert refused["invocations"] == 4 and refused["key"] == at_limit["key"]

    openwhisk.status, openwhisk.answer = 202, b"<html>accepted by a proxy</html>"  # no activation id: not sure
    unclear, log = run_at_once(bound)
    assert unclear["ok"] and unclear["complete"] is False and unclear["invocations"] == 5, unclear
    assert "without an activation id" in unclear["continued_by"]["error"] and log.events("continue_failed")
    assert _json(s3_client, bucket, cp_key)["invocations"] == 5  # the checkpoint stands


def test_without_continue_async_no_activation_is_made(big_db, params, openwhisk):
    result, _ = run_at_once(params)
    assert result["complete"] is False and "continued_by" not in result and openwhisk.calls == []
