"""Restore for the worst night, against real servers: nothing unverified is written (a truncated object is
refused before the first write, a damaged part stops the restore before any of its documents is written),
a restore bigger than one invocation continues over several, and the result says exactly what the target
holds."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
import requests

from backup.keys import manifest_key, restore_checkpoint_key
from tests.helpers import (
    cos_params,
    couch_params,
    db_exists,
    keys_in,
    live_docs,
    load_docs,
    run_at_once,
    run_main,
)

pytestmark = pytest.mark.integration
PAD = "p" * 900  # ~1 KB documents: 12,000 of them make a 3-part object at 5 MiB parts


@pytest.fixture(scope="module")
def three_parts(couch, seaweed) -> dict[str, Any]:
    """One backup object of three parts (5 MiB, 5 MiB, the rest) and its source, made once for the module.
    Uncompressed: its tests damage it in plain text (a bit of a pad flipped, a line appended) and count the
    documents of its parts (the pads compress to one part with gzip)."""
    db = "night-three-parts"
    bucket = "night-three-parts"
    s3 = seaweed.client()
    s3.create_bucket(Bucket=bucket)
    load_docs(couch, db, [{"_id": f"doc-{i:05d}", "pad": PAD} for i in range(12_000)])
    params = {**couch_params(couch, db), **cos_params(seaweed, bucket), "COMPRESSION": "none"}
    made, _ = run_main(params)
    assert made.get("ok") and made["parts"] == 3 and made["key"].endswith("Z_backup.txt"), made
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key(made["key"]))["Body"].read())
    body = s3.get_object(Bucket=bucket, Key=made["key"])["Body"].read()
    return {"params": params, "key": made["key"], "manifest": manifest, "body": body, "bucket": bucket}


@pytest.fixture(scope="module")
def gzipped(three_parts, seaweed) -> dict[str, Any]:
    """A backup of the same database with the default codec (gzip, one part)."""
    s3 = seaweed.client()
    params = {k: v for k, v in three_parts["params"].items() if k != "COMPRESSION"}
    made, _ = run_main(params)
    assert made.get("ok") and made["key"].endswith("Z_backup.txt.gz"), made
    manifest = json.loads(s3.get_object(Bucket=three_parts["bucket"], Key=manifest_key(made["key"]))["Body"].read())
    body = s3.get_object(Bucket=three_parts["bucket"], Key=made["key"])["Body"].read()
    return {**three_parts, "params": params, "key": made["key"], "manifest": manifest, "body": body}


def _put_copy(s3: Any, bucket: str, source: dict[str, Any], body: bytes, name: str) -> str:
    """A copy of the backup under another key (same codec ending), with its manifest (made for that key)."""
    key = source["key"].replace("_backup.txt", f"-{name}_backup.txt")
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    s3.put_object(Bucket=bucket, Key=manifest_key(key), Body=json.dumps({**source["manifest"], "key": key}).encode())
    return key


def _count(couch: Any, db: str) -> int:
    auth = tuple(couch.admin) if couch.admin else None
    return int(requests.get(f"{couch.url}/{db}", auth=auth, timeout=30).json()["doc_count"])


# -- 1. nothing unverified is written


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_a_truncated_object_is_refused_before_anything_is_written(couch, db_name, s3_client, request, codec):
    made = request.getfixturevalue("three_parts" if codec == "none" else "gzipped")
    bucket = made["bucket"]
    cut = _put_copy(s3_client, bucket, made, made["body"][: len(made["body"]) // 2], "cut")
    result, _ = run_main({**made["params"], "OPERATION": "restore", "COS_KEY": cut, "CLOUDANT_DB": db_name,
                          "CREATE_TARGET": True})
    assert result.get("kind") == "format" and "nothing was written" in result["error"], result
    assert not db_exists(couch, db_name)  # not even created


@pytest.mark.parametrize("where", ["first-part", "middle-part", "last-part"])
def test_a_damaged_part_stops_the_restore_before_any_of_its_documents_is_written(couch, db_name, s3_client,
                                                                                three_parts, where):
    bucket, sizes = three_parts["bucket"], [p["size"] for p in three_parts["manifest"]["parts"]]
    part = {"first-part": 0, "middle-part": 1, "last-part": 2}[where]
    body = bytearray(three_parts["body"])
    flip = sum(sizes[:part]) + sizes[part] // 2
    body[flip] ^= 0x04  # one flipped bit: a letter of a pad changes case, the JSON stays valid
    damaged = _put_copy(s3_client, bucket, three_parts, bytes(body), f"flip{part}")
    result, _ = run_main({**three_parts["params"], "OPERATION": "restore", "COS_KEY": damaged, "CLOUDANT_DB": db_name,
                          "CREATE_TARGET": True})
    assert result.get("kind") == "format" and f"part {part + 1} of 3" in result["error"], result
    if part == 0:
        assert "holds no documents, and is deleted again" in result["error"] and not db_exists(couch, db_name)
        return
    held = _count(couch, db_name)
    assert f"now holds {held} documents" in result["error"], result
    whole_parts = three_parts["body"][: sum(sizes[:part])]
    assert 0 < held <= whole_parts.count(b'"_id":')  # only documents of the parts before the damaged one
    assert all(doc["pad"] == PAD for doc in live_docs(couch, db_name))  # nothing altered was written


def test_a_longer_object_than_its_manifest_is_refused_before_anything_is_written(couch, db_name, s3_client,
                                                                                three_parts):
    bucket = three_parts["bucket"]
    longer = _put_copy(s3_client, bucket, three_parts, three_parts["body"] + b'[{"_id":"extra"}]\n', "longer")
    result, _ = run_main({**three_parts["params"], "OPERATION": "restore", "COS_KEY": longer, "CLOUDANT_DB": db_name,
                          "CREATE_TARGET": True})
    assert result.get("kind") == "format" and "nothing was written" in result["error"], result
    assert not db_exists(couch, db_name)


# -- 2. restores bigger than one invocation


def _chain(couch: Any, seaweed: Any, bucket: str, db: str) -> tuple[dict[str, Any], list[str]]:
    """A full backup and an incremental of a database with a design document that validates every write."""
    params = {**couch_params(couch, db), **cos_params(seaweed, bucket), "DOCS_PER_LINE": 100}
    docs: list[dict[str, Any]] = [{"_id": f"doc-{i:04d}", "v": i} for i in range(1_200)]
    docs.append({"_id": "_design/guard", "validate_doc_update":
                 "function (doc) { if (!doc.kind && !doc._deleted) { throw({forbidden: 'kind required'}); } }"})
    load_docs(couch, db, docs)
    full, _ = run_main({**params, "BACKUP_MODE": "incremental"})
    current = {d["_id"]: d for d in live_docs(couch, db)}
    load_docs(couch, db, [{**current[f"doc-{i:04d}"], "kind": "changed"} for i in range(0, 1_200, 3)])
    incremental, _ = run_main({**params, "BACKUP_MODE": "incremental"})
    assert incremental["kind"] == "incremental", incremental
    return params, [full["key"], incremental["key"]]


def test_a_restore_split_by_the_deadline_ends_equal_to_the_source(couch, seaweed, bucket, db_name, s3_client):
    params, chain = _chain(couch, seaweed, bucket, db_name)
    target = f"{db_name}-r"
    args = {**params, "OPERATION": "restore", "COS_KEY": "latest", "SOURCE_DB": db_name, "CLOUDANT_DB": target,
            "CREATE_TARGET": True}
    results = []
    for _ in range(100):
        result, _ = run_at_once(args)  # each invocation's deadline has come: it writes a line and stops
        assert result.get("ok"), result
        results.append(result)
        if result["complete"]:
            break
    final = results[-1]
    assert final["complete"] and final["invocations"] == len(results) >= 3, results[-3:]
    assert final["chain"] == chain and final["docs"] == 1_201 and final["written"] == 1_201 + 400, final
    assert live_docs(couch, target) == live_docs(couch, db_name)  # the design doc and every update included
    checkpoint = restore_checkpoint_key("", target, params["CLOUDANT_URL"].split("://")[1])
    assert checkpoint not in keys_in(s3_client, bucket)  # a finished restore leaves no checkpoint


def test_another_restore_into_a_checkpointed_target_is_refused(couch, seaweed, bucket, db_name):
    params, chain = _chain(couch, seaweed, bucket, db_name)
    target = f"{db_name}-r"
    args = {**params, "OPERATION": "restore", "COS_KEY": chain[-1], "CLOUDANT_DB": target, "CREATE_TARGET": True}
    first, _ = run_at_once(args)
    assert first["complete"] is False, first
    other, _ = run_main({**args, "COS_KEY": chain[0]})
    assert other.get("kind") == "cos" and "another restore into it" in other["error"], other
    finished, _ = run_main(args)  # the same parameters go on
    assert finished.get("complete") and finished["invocations"] == 2, finished
    assert live_docs(couch, target) == live_docs(couch, db_name)


def test_continue_async_continues_a_restore_through_the_platform(couch, seaweed, bucket, db_name, openwhisk):
    params, chain = _chain(couch, seaweed, bucket, db_name)
    args = {**params, "OPERATION": "restore", "COS_KEY": chain[-1], "CLOUDANT_DB": f"{db_name}-r",
            "CREATE_TARGET": True, "CONTINUE_ASYNC": True}
    first, _ = run_at_once(args)
    assert first["complete"] is False and first["continued_by"]["activation_id"], first
    payload = openwhisk.calls[-1]["body"]
    assert payload["OPERATION"] == "restore" and payload["COS_KEY"] == chain[-1]
    assert payload["CLOUDANT_DB"] == f"{db_name}-r" and "CLOUDANT_PASSWORD" not in payload


# -- 5. the result is exact


def test_a_chain_restore_reports_what_the_target_holds_and_what_was_written(couch, seaweed, bucket, db_name):
    params, chain = _chain(couch, seaweed, bucket, db_name)
    restored, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": chain[-1], "CLOUDANT_DB": f"{db_name}-r",
                            "CREATE_TARGET": True})
    assert restored["docs"] == 1_201 and restored["written"] == 1_601 and restored["invocations"] == 1, restored


def _split_restore(args: dict[str, Any], limit: int = 50) -> list[dict[str, Any]]:
    """Restore with every invocation's deadline already come, until it completes or fails."""
    results = []
    for _ in range(limit):
        result, _ = run_at_once(args)
        results.append(result)
        if not result.get("ok") or result.get("complete"):
            break
    return results


def test_a_file_without_a_manifest_checkpointed_after_its_last_line_completes(couch, seaweed, bucket, db_name,
                                                                              s3_client):
    """The checkpoint after the last line is at the object's end: a ranged GET there is refused (416)."""
    key = "imports/two-lines.txt"
    s3_client.put_object(Bucket=bucket, Key=key, Body=b'[{"_id":"a","_rev":"1-x"}]\n[{"_id":"b","_rev":"1-y"}]\n')
    args = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "OPERATION": "restore", "COS_KEY": key,
            "CREATE_TARGET": True}
    results = _split_restore(args)
    assert results[-1].get("complete") is True and results[-1]["docs"] == 2, results


def test_a_file_without_any_backup_line_fails_even_when_split(couch, seaweed, bucket, db_name, s3_client):
    key = "imports/junk.gz"
    s3_client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b"junk1\njunk2\njunk3\n"))
    args = {**couch_params(couch, db_name), **cos_params(seaweed, bucket), "OPERATION": "restore", "COS_KEY": key,
            "CREATE_TARGET": True}
    results = _split_restore(args)
    assert results[-1].get("kind") == "format" and "not a backup file" in results[-1]["error"], results
    assert not db_exists(couch, db_name)  # it held nothing: deleted again


def test_a_continued_restore_whose_object_changed_says_what_the_target_holds(couch, db_name, s3_client, three_parts):
    bucket = three_parts["bucket"]
    key = _put_copy(s3_client, bucket, three_parts, three_parts["body"], "replaced")
    args = {**three_parts["params"], "OPERATION": "restore", "COS_KEY": key, "CLOUDANT_DB": db_name,
            "CREATE_TARGET": True}
    for _ in range(3):
        first, _ = run_at_once(args)
        assert first.get("complete") is False, first
    s3_client.put_object(Bucket=bucket, Key=key, Body=three_parts["body"][:1000])
    result, _ = run_main(args)
    assert result.get("kind") == "format" and "nothing was written" not in result["error"], result
    assert f"now holds {_count(couch, db_name)} documents" in result["error"], result
