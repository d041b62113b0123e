"""Restore, list and verify against real servers: every backup proven restorable."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from backup.keys import backup_key, manifest_key
from tests.helpers import (
    OUTPUTS,
    cos_params,
    couch_params,
    db_exists,
    incomplete_uploads,
    incompressible_docs,
    live_docs,
    load_docs,
    object_body,
    plain_key,
    run_main,
    sample_docs,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def params(couch, seaweed, db_name, bucket):
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}


def _revise(couch, db, ids, times):
    """Give docs several revisions, so restore must keep the winning _rev exactly."""
    auth = tuple(couch.admin)
    for _ in range(times):
        for doc_id in ids:
            doc = requests.get(f"{couch.url}/{db}/{doc_id}", auth=auth, timeout=30).json()
            doc["edits"] = doc.get("edits", 0) + 1
            requests.put(f"{couch.url}/{db}/{doc_id}", json=doc, auth=auth, timeout=30).raise_for_status()


def _restore(params, key, target, **extra):
    return run_main({**params, "OPERATION": "restore", "COS_KEY": key, "CLOUDANT_DB": target, **extra})


def test_round_trip_keeps_every_id_rev_and_body(couch, db_name, params):
    load_docs(couch, db_name, incompressible_docs(filler=4000, filler_bytes=2000))  # multi-part object, gzip too
    _revise(couch, db_name, ["doc-000001", "café-ünïcødé", "_design/by_name"], times=3)
    backup, _ = run_main({**params, "PART_SIZE_MB": 5})
    assert backup["ok"] and backup["parts"] >= 2, backup

    restored, _ = _restore(params, backup["key"], f"{db_name}-copy", CREATE_TARGET=True, RESTORE_BATCH_SIZE=250)
    assert restored["ok"], restored
    # 4,004 docs in 17 batches, then the design doc in one of its own: design docs are written last
    assert restored["docs"] == backup["docs"] == 4005 and restored["batches"] == 18
    source, copy = live_docs(couch, db_name), live_docs(couch, f"{db_name}-copy")
    assert copy == source
    assert next(d for d in copy if d["_id"] == "doc-000001")["_rev"].startswith("4-")


def test_documents_with_attachments_are_restored_without_them_and_counted(couch, db_name, params):
    """A backup made with ATTACHMENTS=false holds attachment stubs only (as couchbackup's without --attachments): a
    stub alone fails the write (412 missing_stub)."""
    attachment = {"a.txt": {"content_type": "text/plain", "data": "aGVsbG8="}}
    load_docs(couch, db_name, [{"_id": "plain", "n": 1}, {"_id": "with", "n": 2, "_attachments": attachment}])
    backup, _ = run_main({**params, "ATTACHMENTS": "false"})
    assert backup["ok"] and backup["docs"] == 2 and backup["attachments_skipped"] == 1, backup

    restored, log = _restore(params, backup["key"], f"{db_name}-copy", CREATE_TARGET=True)
    assert restored["ok"] and restored["docs"] == 2 and restored["attachments_dropped"] == 1, restored
    assert log.events("attachments_not_restored")[0]["docs"] == 1
    source = {d["_id"]: d for d in live_docs(couch, db_name)}
    copy = {d["_id"]: d for d in live_docs(couch, f"{db_name}-copy")}
    assert "_attachments" in source["with"] and "_attachments" not in copy["with"]
    assert copy["plain"] == source["plain"]
    assert {k: v for k, v in source["with"].items() if k != "_attachments"} == copy["with"]  # same _rev, same body


def test_large_documents_make_bounded_lines_and_requests(couch, db_name, bucket, s3_client, params):
    """500 documents near Cloudant's 1 MB limit must not make one 500 MB line or one `_bulk_docs` body Cloudant
    refuses (413): lines end at LINE_BYTES, restore batches at BATCH_BYTES, whatever the document counts."""
    from backup.backup import LINE_BYTES
    from backup.restore import BATCH_BYTES

    load_docs(couch, db_name, [{"_id": f"big-{i:03d}", "blob": f"{i}" * 300_000} for i in range(30)])  # ~9 MB
    backup, _ = run_main(params)
    assert backup["ok"] and backup["docs"] == 30, backup
    body = object_body(s3_client, bucket, backup["key"])
    lines = body.split(b"\n")[1:-1]
    assert len(lines) >= 3 and all(len(line) < LINE_BYTES + 310_000 for line in lines), [len(x) for x in lines]

    restored, _ = _restore(params, backup["key"], f"{db_name}-copy", CREATE_TARGET=True)
    assert restored["ok"] and restored["docs"] == 30, restored
    assert restored["batches"] >= 9_000_000 // BATCH_BYTES + 1
    assert live_docs(couch, f"{db_name}-copy") == live_docs(couch, db_name)


def test_round_trip_with_gzip_on_both_ways(couch, db_name, params):
    """CLOUDANT_GZIP=true: gzipped pages (inflated before they are spliced) and gzipped `_bulk_docs` bodies."""
    from backup import cloudant
    from backup.config import CloudantConfig

    zipped = cloudant.make_client(CloudantConfig(couch.url, "none", gzip=True), 10, 0)
    plain = cloudant.make_client(CloudantConfig(couch.url, "none"), 10, 0)
    assert zipped.get_enable_gzip_compression() and "Accept-Encoding" not in (zipped.default_headers or {})
    assert not plain.get_enable_gzip_compression() and plain.default_headers["Accept-Encoding"] == "identity"
    load_docs(couch, db_name, sample_docs(filler=300))
    backup, log = run_main({**params, "CLOUDANT_GZIP": True, "PAGE_SIZE": 100})
    assert backup["ok"] and backup["docs"] == 305, backup
    restored, _ = _restore({**params, "CLOUDANT_GZIP": True}, backup["key"], f"{db_name}-copy", CREATE_TARGET=True)
    assert restored["ok"] and restored["docs"] == 305, restored
    assert live_docs(couch, f"{db_name}-copy") == live_docs(couch, db_name)


def test_round_trip_of_an_empty_database(couch, db_name, params):
    load_docs(couch, db_name, [])
    backup, _ = run_main(params)
    restored, _ = _restore(params, backup["key"], f"{db_name}-copy", CREATE_TARGET="true")
    assert restored["ok"] and restored["docs"] == 0 and restored["batches"] == 0
    assert live_docs(couch, f"{db_name}-copy") == []


def test_restore_refuses_a_non_empty_target_and_writes_nothing(couch, db_name, params):
    load_docs(couch, db_name, sample_docs(filler=5))
    backup, _ = run_main(params)
    load_docs(couch, f"{db_name}-busy", [{"_id": "already-here"}])
    result, _ = _restore(params, backup["key"], f"{db_name}-busy")
    assert result["kind"] == "target_not_empty" and "not empty" in result["error"]
    assert [d["_id"] for d in live_docs(couch, f"{db_name}-busy")] == ["already-here"]

    forced, _ = _restore(params, backup["key"], f"{db_name}-busy", ALLOW_NON_EMPTY_TARGET=True)
    assert forced["ok"] and len(live_docs(couch, f"{db_name}-busy")) == 11


def test_restore_into_a_missing_database_needs_create_target(couch, db_name, params):
    load_docs(couch, db_name, sample_docs(filler=1))
    backup, _ = run_main(params)
    result, _ = _restore(params, backup["key"], f"{db_name}-missing")
    assert result["kind"] == "cloudant" and "CREATE_TARGET" in result["error"]


def test_a_corrupted_line_is_reported_with_its_line_number(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=30))
    backup, _ = run_main({**params, "DOCS_PER_LINE": 5})
    body = object_body(s3_client, bucket, backup["key"])
    lines = body.split(b"\n")
    lines[3] = lines[3][:-7] + b"garbage"
    key = plain_key(backup["key"], "1")
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"\n".join(lines))
    result, _ = _restore(params, key, f"{db_name}-copy", CREATE_TARGET=True)
    assert result["kind"] == "format"
    assert "Error on line 4 of backup file - cannot parse as JSON" in result["error"]
    assert "the restore stopped" in result["error"] and "holds no documents, and is deleted again" in result["error"]


def test_a_rejected_batch_fails_the_restore_and_names_the_batch(couch, db_name, bucket, s3_client, params):
    meta = b'{"name":"x","version":"1","mode":"shallow"}\n'
    good = json.dumps([{"_id": f"ok{i}", "_rev": "1-abc"} for i in range(3)]).encode()
    bad = json.dumps([{"_id": "bad", "_rev": "1-abc", "_not_allowed": 1}]).encode()
    key = backup_key("", db_name, datetime.now(UTC))
    s3_client.put_object(Bucket=bucket, Key=key, Body=meta + good + b"\n" + bad + b"\n")
    # MAX_RETRIES=0: pouchdb-server answers the bad document with a 500, which the SDK would retry for 30 s
    result, _ = _restore(params, key, f"{db_name}-copy", CREATE_TARGET=True, RESTORE_BATCH_SIZE=3, MAX_RETRIES=0)
    assert result["kind"] == "cloudant"
    assert "restoring batch 2 (lines 3-3)" in result["error"] and "now holds 3 documents" in result["error"]


def test_verify_accepts_a_good_backup_and_catches_truncation_and_corruption(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=50))
    backup, _ = run_main(params)  # gzip, the default
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": backup["key"]})
    assert verified["ok"] and verified["docs"] == backup["docs"] and verified["sha256"] == backup["sha256"]

    body = s3_client.get_object(Bucket=bucket, Key=backup["key"])["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=backup["key"], Body=body[: len(body) // 2])
    truncated, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": backup["key"]})
    assert truncated["kind"] == "format" and "truncated" in truncated["error"], truncated

    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x04  # one bit of the compressed bytes
    s3_client.put_object(Bucket=bucket, Key=backup["key"], Body=bytes(flipped))
    corrupted, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": backup["key"]})
    assert corrupted["kind"] == "format" and "sha256 differs" in corrupted["error"], corrupted

    # Uncompressed: the damage is made in plain text (a digit changed, the JSON still valid, the size the same).
    plain, _ = run_main({**params, "COMPRESSION": "none"})
    body = s3_client.get_object(Bucket=bucket, Key=plain["key"])["Body"].read()
    flipped = body.replace(b'"n":7,', b'"n":8,')
    assert len(flipped) == len(body) and flipped != body
    s3_client.put_object(Bucket=bucket, Key=plain["key"], Body=flipped)
    corrupted, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": plain["key"]})
    assert corrupted["kind"] == "format" and "sha256 differs" in corrupted["error"], corrupted


def test_verify_refuses_a_manifest_of_another_backup_or_one_inconsistent_with_itself(couch, db_name, bucket, s3_client,
                                                                                   params):
    load_docs(couch, db_name, sample_docs(filler=50))
    first, _ = run_main(params)
    load_docs(couch, db_name, [{"_id": "more"}])
    second, _ = run_main(params)
    first_manifest = s3_client.get_object(Bucket=bucket, Key=manifest_key(first["key"]))["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=manifest_key(second["key"]), Body=first_manifest)
    swapped, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": second["key"]})
    assert swapped["kind"] == "format" and f"its manifest is the one of {first['key']}" in swapped["error"], swapped

    # parts that stop short of the object would leave its end unchecked: a manifest saying so is refused
    short = json.loads(first_manifest)
    short["parts"], short["bytes"] = [], 0
    s3_client.put_object(Bucket=bucket, Key=manifest_key(first["key"]), Body=json.dumps(short).encode())
    inconsistent, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": first["key"]})
    assert inconsistent["kind"] == "format" and "inconsistent manifest" in inconsistent["error"], inconsistent


def test_verify_rejects_an_object_that_is_not_a_backup(db_name, bucket, s3_client, params):
    key = f"{db_name}_2020-01-01T00:00:00.000000Z_backup.txt"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"hello\n")
    result, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": key})
    assert result["kind"] == "format" and "no manifest" in result["error"]
    missing, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": "nothing-here"})
    assert missing["kind"] == "cos" and "no such object" in missing["error"]


def test_list_shows_backups_newest_first_with_doc_counts(couch, db_name, params):
    load_docs(couch, db_name, sample_docs(filler=2))
    first, _ = run_main(params)
    load_docs(couch, db_name, [{"_id": "one-more"}])
    second, _ = run_main(params)
    other_db = f"{db_name}-other"
    load_docs(couch, other_db, [{"_id": "x"}])
    run_main({**params, "CLOUDANT_DB": other_db})

    listed, _ = run_main({**params, "OPERATION": "list", "CLOUDANT_DB": db_name})
    assert [b["key"] for b in listed["backups"]] == [second["key"], first["key"]]
    assert [b["docs"] for b in listed["backups"]] == [8, 7]
    assert all(b["complete"] and b["bytes"] > 0 and b["time"] for b in listed["backups"])
    everything, _ = run_main({**params, "OPERATION": "list", "CLOUDANT_DB": None})
    assert everything["count"] == 3 and "truncated" not in everything
    newest, _ = run_main({**params, "OPERATION": "list", "CLOUDANT_DB": None, "LIST_LIMIT": 2})
    assert newest["count"] == 3 and newest["truncated"] is True and len(newest["backups"]) == 2
    assert newest["backups"] == everything["backups"][:2]


def test_latest_never_falls_back_past_a_newest_backup_whose_manifest_cannot_be_read(couch, db_name, bucket, s3_client,
                                                                                     params):
    load_docs(couch, db_name, sample_docs(filler=2))
    older, _ = run_main(params)
    load_docs(couch, db_name, [{"_id": "newest"}])
    newest, _ = run_main(params)
    s3_client.put_object(Bucket=bucket, Key=manifest_key(newest["key"]), Body=b"{not json")  # or a failed GET

    latest = {"COS_KEY": "latest", "SOURCE_DB": db_name}
    restored, _ = _restore(params, "latest", f"{db_name}-copy", CREATE_TARGET=True, SOURCE_DB=db_name)
    verified, _ = run_main({**params, "OPERATION": "verify", **latest})
    for result in (restored, verified):  # the older backup would restore without "newest", and say ok
        assert result.get("kind") == "cos" and "not falling back to an older one" in result["error"], result
        assert newest["key"] in result["error"]
    listed, _ = run_main({**params, "OPERATION": "list"})
    entry = next(b for b in listed["backups"] if b["key"] == newest["key"])
    assert entry["complete"] is False and manifest_key(newest["key"]) in entry["manifest_error"]
    assert next(b for b in listed["backups"] if b["key"] == older["key"])["complete"] is True


def test_cli_restores_the_latest_backup_of_a_database(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=3))
    run_main(params)
    load_docs(couch, db_name, [{"_id": "newest"}])
    run_main(params)
    env = {**os.environ, **params}
    del env["CLOUDANT_DB"]
    proc = subprocess.run(
        [sys.executable, "-m", "backup", "restore", "--key", "latest", "--source-db", db_name,
         "--db", f"{db_name}-cli", "--create-target"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    OUTPUTS.extend([proc.stdout, proc.stderr])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["docs"] == 9
    assert live_docs(couch, f"{db_name}-cli") == live_docs(couch, db_name)
    listed = subprocess.run([sys.executable, "-m", "backup", "--quiet", "list", "--db", db_name], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and json.loads(listed.stdout)["count"] == 2
    assert incomplete_uploads(s3_client, bucket) == []


def test_a_gzip_compressed_backup_restores_whatever_its_key(couch, db_name, bucket, s3_client, params):
    """`couchbackup | gzip` is what couchbackup's docs recommend: recognised by its magic bytes, not its key."""
    load_docs(couch, db_name, sample_docs(filler=300))
    backup, _ = run_main({**params, "DOCS_PER_LINE": 50})
    body = object_body(s3_client, bucket, backup["key"])
    half = body.index(b"\n", len(body) // 2) + 1  # two gzip members, as `gzip -c a b` writes
    key = plain_key(backup["key"], "1")  # a key without the .gz ending
    s3_client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body[:half]) + gzip.compress(body[half:]))
    restored, _ = _restore(params, key, f"{db_name}-copy", CREATE_TARGET=True)
    assert restored["ok"] and restored["docs"] == backup["docs"] == 305, restored
    assert live_docs(couch, f"{db_name}-copy") == live_docs(couch, db_name)


def test_a_truncated_gzip_backup_fails_and_deletes_the_target_it_created(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=30))
    backup, _ = run_main(params)
    zipped = gzip.compress(object_body(s3_client, bucket, backup["key"]))
    key = plain_key(backup["key"], "1")
    s3_client.put_object(Bucket=bucket, Key=key, Body=zipped[:-20])
    result, _ = _restore(params, key, f"{db_name}-copy", CREATE_TARGET=True, RESTORE_BATCH_SIZE=1000)
    assert result["kind"] == "format" and "truncated" in result["error"], result
    assert "deleted again" in result["error"] and not db_exists(couch, f"{db_name}-copy")


def test_documents_without_rev_are_written_as_new_edits_beside_those_with(couch, db_name, bucket, s3_client, params):
    """Shallow files from couchbackup before 2.4.2 have no `_rev`: written as new edits (new revisions), as
    couchrestore does; in a batch that mixes them with revisioned docs, those keep their `_rev` exactly."""
    with_rev = [{"_id": f"r{i}", "_rev": f"3-{i:032x}", "n": i} for i in range(3)]
    without = [{"_id": f"n{i}", "n": i} for i in range(3)]
    mixed = [with_rev[0], without[0], without[1], with_rev[1], without[2], with_rev[2]]
    key = backup_key("", db_name, datetime.now(UTC))
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(mixed).encode() + b"\n")  # no metadata line
    restored, _ = _restore(params, key, f"{db_name}-copy", CREATE_TARGET=True)
    assert restored["ok"] and restored["docs"] == 6 and restored["batches"] == 1, restored
    copy = {d["_id"]: d for d in live_docs(couch, f"{db_name}-copy")}
    assert [copy[d["_id"]] for d in with_rev] == with_rev
    assert [copy[d["_id"]]["_rev"][:2] for d in without] == ["1-"] * 3
    assert [{k: v for k, v in copy[d["_id"]].items() if k != "_rev"} for d in without] == without
