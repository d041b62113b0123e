"""Incremental backups against real servers: `_changes` since the previous complete backup, changed docs
with `_revisions`, deletions as tombstones, manifests naming their base, and chain restore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from backup.config import host_of
from backup.keys import checkpoint_key, manifest_key
from devstack import Fault, FaultProxy
from tests.helpers import (
    cos_params,
    couch_params,
    incomplete_uploads,
    keys_in,
    live_docs,
    load_docs,
    object_body,
    object_lines,
    run_main,
    sample_docs,
)

pytestmark = pytest.mark.integration
INCREMENTAL = {"BACKUP_MODE": "incremental"}


@pytest.fixture
def params(couch, seaweed, db_name, bucket):
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}


@pytest.fixture
def couch_proxy(couch) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's pouchdb-server."""
    with FaultProxy(couch.url, upstream_timeout=60) as proxy:
        yield proxy


def _auth(couch: Any) -> Any:
    return tuple(couch.admin) if couch.admin else None


def _get(couch: Any, db: str, doc_id: str) -> requests.Response:
    return requests.get(f"{couch.url}/{db}/{requests.utils.quote(doc_id, safe='')}", auth=_auth(couch), timeout=30)


def _current(couch: Any, db: str, ids: list[str]) -> list[dict[str, Any]]:
    r = requests.post(f"{couch.url}/{db}/_all_docs", params={"include_docs": "true"}, json={"keys": ids},
                      auth=_auth(couch), timeout=120)
    r.raise_for_status()
    docs = [row.get("doc") for row in r.json()["rows"]]
    assert all(docs) and len(docs) == len(ids), "a doc to change is missing"
    return docs


def _update(couch: Any, db: str, ids: list[str], **fields: Any) -> None:
    docs = _current(couch, db, ids)
    for doc in docs:
        doc.update(fields)
        doc["edits"] = doc.get("edits", 0) + 1
    _check(load_docs(couch, db, docs))


def _delete(couch: Any, db: str, ids: list[str]) -> None:
    docs = _current(couch, db, ids)
    _check(load_docs(couch, db, [{"_id": d["_id"], "_rev": d["_rev"], "_deleted": True} for d in docs]))


def _check(responses: list[dict[str, Any]]) -> None:
    assert all(r.get("ok") for r in responses), [r for r in responses if not r.get("ok")][:3]


def _restore(params: dict[str, Any], target: str, **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, "OPERATION": "restore", "CLOUDANT_DB": target, **extra})
    return result


def _manifest(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=manifest_key(key))["Body"].read())


def _docs(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    return [doc for line in object_lines(s3, bucket, key)[1:] for doc in line]


def _size(s3: Any, bucket: str, key: str) -> int:
    return s3.head_object(Bucket=bucket, Key=key)["ContentLength"]


def _changes(couch: Any, db: str) -> dict[str, tuple[str, bool]]:
    """Every id the database knows, live or deleted: its winning revision and whether it is deleted."""
    r = requests.get(f"{couch.url}/{db}/_changes", auth=_auth(couch), timeout=120)
    r.raise_for_status()
    return {c["id"]: (c["changes"][0]["rev"], bool(c.get("deleted"))) for c in r.json()["results"]}


def _assert_deleted(couch: Any, db: str, doc_id: str, source: str) -> None:
    """Gone from the target (404), and known there as deleted at the source's tombstone revision."""
    assert _get(couch, db, doc_id).status_code == 404
    rev, deleted = _changes(couch, source)[doc_id]
    assert deleted and _changes(couch, db).get(doc_id) == (rev, True), doc_id
    tombstone = requests.get(f"{couch.url}/{db}/{requests.utils.quote(doc_id, safe='')}", params={"rev": rev},
                             auth=_auth(couch), timeout=30)
    assert tombstone.status_code == 200 and tombstone.json().get("_deleted") is True, tombstone.text


def _assert_incremental(s3: Any, bucket: str, result: dict[str, Any], base: dict[str, Any], db: str) -> None:
    """The object, manifest and metadata line of an incremental backup following `base`."""
    assert result["ok"] and result["complete"] and result["kind"] == "incremental", result
    assert result["base"] == base["key"]
    manifest, base_manifest = _manifest(s3, bucket, result["key"]), _manifest(s3, bucket, base["key"])
    assert manifest["kind"] == "incremental" and manifest["base"] == base["key"]
    assert manifest["since"] == base_manifest["seq"] and manifest["seq"] is not None
    assert manifest["docs"] == result["docs"] and manifest["last_id"] is None
    meta = object_lines(s3, bucket, result["key"])[0]
    assert meta["backup"] == "incremental" and meta["base"] == base["key"] and meta["since"] == base_manifest["seq"]
    assert meta["name"] == "cloudant-cos-backup" and meta["mode"] == "shallow" and meta["database"] == db
    for doc in _docs(s3, bucket, result["key"]):
        assert doc["_revisions"]["start"] == int(doc["_rev"].split("-")[0]), doc
        assert doc["_revisions"]["ids"][0] == doc["_rev"].split("-", 1)[1]


def test_full_then_two_incrementals_restore_as_a_chain(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=300))
    full, log = run_main({**params, **INCREMENTAL})  # no complete backup yet: a full one
    assert full["ok"] and full["kind"] == "full" and "base" not in full and full["docs"] == 305, full
    assert full["full_because"] == "there is no complete backup of the database yet", full
    assert _manifest(s3_client, bucket, full["key"])["kind"] == "full"
    meta = object_lines(s3_client, bucket, full["key"])[0]
    assert meta["backup"] == "full" and meta["base"] is None

    # Inserts, updates (some several times, a design doc, a non-ASCII id) and deletions.
    load_docs(couch, db_name, [{"_id": f"new-{i:03d}", "n": i} for i in range(20)])
    _update(couch, db_name, [f"doc-{i:06d}" for i in range(10)] + ["café-ünïcødé", "_design/by_name"], touched=1)
    for _ in range(3):
        _update(couch, db_name, ["doc-000010"])
    deleted_a = [f"doc-{i:06d}" for i in range(100, 105)] + ["日本"]
    _delete(couch, db_name, deleted_a)
    after_first = live_docs(couch, db_name)
    changes_after_first = _changes(couch, db_name)

    first, _ = run_main({**params, **INCREMENTAL})
    _assert_incremental(s3_client, bucket, first, full, db_name)
    changed = {f"new-{i:03d}" for i in range(20)} | {f"doc-{i:06d}" for i in range(11)} | {"café-ünïcødé", "_design/by_name"}
    first_docs = _docs(s3_client, bucket, first["key"])
    assert {d["_id"] for d in first_docs} == changed | set(deleted_a)
    assert first["docs"] == len(first_docs) == len(changed) + len(deleted_a)  # each change once, nothing else
    tombstones = [d for d in first_docs if d.get("_deleted")]
    assert {d["_id"] for d in tombstones} == set(deleted_a)
    assert all(set(d) == {"_id", "_rev", "_revisions", "_deleted"} for d in tombstones), tombstones[:2]
    assert next(d for d in first_docs if d["_id"] == "doc-000010")["_revisions"]["start"] == 4

    # More: delete a doc inserted after the full, re-create a deleted id, insert and delete within the day.
    _delete(couch, db_name, ["new-000", "doc-000200"])
    load_docs(couch, db_name, [{"_id": "doc-000100", "reborn": True}, {"_id": "ephemeral", "v": 1},
                               *({"_id": f"later-{i}"} for i in range(5))])
    _delete(couch, db_name, ["ephemeral"])
    _update(couch, db_name, ["doc-000000", "new-001"], touched=2)
    after_second = live_docs(couch, db_name)

    second, _ = run_main({**params, **INCREMENTAL})
    _assert_incremental(s3_client, bucket, second, first, db_name)
    second_docs = {d["_id"]: d for d in _docs(s3_client, bucket, second["key"])}
    assert set(second_docs) == {"new-000", "doc-000200", "doc-000100", "ephemeral", "doc-000000", "new-001",
                                *(f"later-{i}" for i in range(5))}
    assert second_docs["doc-000100"]["_rev"].startswith("3-") and not second_docs["doc-000100"].get("_deleted")
    assert second_docs["ephemeral"]["_deleted"] is True

    for key in (full["key"], first["key"], second["key"]):
        verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": key})
        assert verified["ok"], verified
    listed, _ = run_main({**params, "OPERATION": "list"})
    assert [(b["kind"], b["base"]) for b in listed["backups"]] == [
        ("incremental", first["key"]), ("incremental", full["key"]), ("full", None)]

    # Restore the newest: the whole chain, oldest first.
    target = f"{db_name}-restored"
    restored = _restore(params, target, COS_KEY="latest", SOURCE_DB=db_name, CREATE_TARGET=True)
    assert restored["ok"], restored
    assert restored["chain"] == [full["key"], first["key"], second["key"]] and restored["key"] == second["key"]
    assert restored["written"] == full["docs"] + first["docs"] + second["docs"]  # revisions written
    assert restored["docs"] == len(live_docs(couch, target))  # what the target holds
    assert live_docs(couch, target) == after_second
    assert _changes(couch, target) == _changes(couch, db_name)  # tombstones too, at the same revisions
    for doc_id in ("new-000", "doc-000200", "ephemeral", "doc-000101", "日本"):
        _assert_deleted(couch, target, doc_id, db_name)
    assert _get(couch, target, "doc-000100").json()["reborn"] is True

    # Applying the same changes again is harmless.
    again = _restore(params, target, COS_KEY="latest", SOURCE_DB=db_name)
    assert again["kind"] == "target_not_empty", again
    again = _restore(params, target, COS_KEY="latest", SOURCE_DB=db_name, ALLOW_NON_EMPTY_TARGET=True)
    assert again["ok"] and again["chain"] == restored["chain"], again
    assert live_docs(couch, target) == after_second
    assert _changes(couch, target) == _changes(couch, db_name)

    # An explicit incremental key restores its chain up to that key only.
    middle = _restore(params, f"{db_name}-middle", COS_KEY=first["key"], CREATE_TARGET=True)
    assert middle["ok"] and middle["chain"] == [full["key"], first["key"]], middle
    assert live_docs(couch, f"{db_name}-middle") == after_first
    assert _changes(couch, f"{db_name}-middle") == changes_after_first
    assert _get(couch, f"{db_name}-middle", "doc-000100").status_code == 404
    assert _get(couch, f"{db_name}-middle", "new-000").status_code == 200

    only_full = _restore(params, f"{db_name}-full", COS_KEY=full["key"], CREATE_TARGET=True)
    assert only_full["ok"] and "chain" not in only_full and only_full["docs"] == 305
    assert len(live_docs(couch, f"{db_name}-full")) == 305


def test_an_incremental_whose_base_was_pruned_is_refused(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=20))
    full, _ = run_main(params)
    load_docs(couch, db_name, [{"_id": "added"}])
    incremental, _ = run_main({**params, **INCREMENTAL})
    assert incremental["base"] == full["key"], incremental
    s3_client.delete_object(Bucket=bucket, Key=full["key"])
    s3_client.delete_object(Bucket=bucket, Key=manifest_key(full["key"]))

    target = f"{db_name}-restored"
    for key in ({"COS_KEY": "latest", "SOURCE_DB": db_name}, {"COS_KEY": incremental["key"]}):
        result = _restore(params, target, CREATE_TARGET=True, **key)
        assert result["kind"] == "format", result
        assert f"incremental backup {incremental['key']} follows {full['key']}" in result["error"]
        assert "missing or incomplete" in result["error"] and "cannot be restored" in result["error"]
    assert requests.get(f"{couch.url}/{target}", auth=_auth(couch), timeout=30).status_code == 404  # never created

    # An incremental is verified with its chain: without its base it is not a backup that restores.
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": incremental["key"]})
    assert verified.get("kind") == "format" and f"follows {full['key']}" in verified["error"], verified


def test_an_incremental_without_changes_is_metadata_only_and_still_chains(couch, db_name, bucket, s3_client, params):
    load_docs(couch, db_name, sample_docs(filler=10))
    full, _ = run_main(params)
    empty, _ = run_main({**params, **INCREMENTAL})
    assert empty["ok"] and empty["kind"] == "incremental" and empty["docs"] == 0 and empty["base"] == full["key"]
    assert len(object_lines(s3_client, bucket, empty["key"])) == 1
    load_docs(couch, db_name, [{"_id": "after-the-empty-one"}])
    last, _ = run_main({**params, **INCREMENTAL})
    assert last["base"] == empty["key"] and last["docs"] == 1, last
    restored = _restore(params, f"{db_name}-r", COS_KEY="latest", SOURCE_DB=db_name, CREATE_TARGET=True)
    assert restored["chain"] == [full["key"], empty["key"], last["key"]], restored
    assert live_docs(couch, f"{db_name}-r") == live_docs(couch, db_name)


def test_a_days_incremental_is_a_fraction_of_the_full(couch, db_name, bucket, s3_client, params):
    """A 10,000-doc database of ~1 KB docs with 1% of it changed in a day (the size the README quotes)."""
    load_docs(couch, db_name, [{"_id": f"doc-{i:06d}", "n": i, "pad": "p" * 1000} for i in range(10_000)])
    full, _ = run_main(params)
    _update(couch, db_name, [f"doc-{i:06d}" for i in range(0, 6000, 100)], n=-1)  # 60 updated
    load_docs(couch, db_name, [{"_id": f"new-{i:03d}", "pad": "q" * 1000} for i in range(20)])  # 20 inserted
    _delete(couch, db_name, [f"doc-{i:06d}" for i in range(6001, 8000, 100)])  # 20 deleted
    incremental, _ = run_main({**params, **INCREMENTAL})
    assert incremental["docs"] == 100, incremental
    full_bytes, incremental_bytes = _size(s3_client, bucket, full["key"]), _size(s3_client, bucket, incremental["key"])
    assert (full_bytes, incremental_bytes) == (full["bytes"], incremental["bytes"])
    message = (f"10,000 docs of ~1 KB, 1% changed (60 updates, 20 inserts, 20 deletions): full backup {full_bytes} bytes, "
               f"incremental {incremental_bytes} bytes ({100 * incremental_bytes / full_bytes:.2f}% of the full)")
    print("\n" + message)
    assert incremental_bytes < full_bytes, message
    restored = _restore(params, f"{db_name}-r", COS_KEY="latest", SOURCE_DB=db_name, CREATE_TARGET=True)
    assert restored["chain"] == [full["key"], incremental["key"]]
    assert live_docs(couch, f"{db_name}-r") == live_docs(couch, db_name)


def test_a_big_incremental_continues_over_invocations(couch, db_name, bucket, s3_client, params):
    """~14 MB of changes with a 2 s budget: checkpoints (kind, base, since kept) and a whole chain at the end."""
    load_docs(couch, db_name, [{"_id": f"doc-{i:05d}", "pad": "a" * 1000} for i in range(1000)])
    full, _ = run_main(params)
    load_docs(couch, db_name, [{"_id": f"new-{i:05d}", "pad": "c" * 1000} for i in range(12_000)])
    _update(couch, db_name, [f"doc-{i:05d}" for i in range(1000)] + [f"new-{i:05d}" for i in range(0, 12_000, 10)],
            pad="b" * 1000)
    _delete(couch, db_name, [f"doc-{i:05d}" for i in range(0, 1000, 7)] + [f"new-{i:05d}" for i in range(5, 12_000, 100)])
    expected_ids = {f"doc-{i:05d}" for i in range(1000)} | {f"new-{i:05d}" for i in range(12_000)}

    args = {**params, **INCREMENTAL, "TIME_BUDGET": 2, "SAFETY_MARGIN": 1, "PART_SIZE_MB": 5}
    results = []
    for _ in range(40):
        result, _ = run_main(args)
        assert result.get("ok"), result
        results.append(result)
        if result["complete"]:
            break
        cp = json.loads(s3_client.get_object(Bucket=bucket, Key=checkpoint_key("", db_name, host_of(couch.url)))["Body"].read())
        assert cp["kind"] == "incremental" and cp["base"] == full["key"] and cp["key"] == result["key"]
        assert cp["since"] == _manifest(s3_client, bucket, full["key"])["seq"]
    final = results[-1]
    print(f"\nincremental of {len(expected_ids)} changed docs with TIME_BUDGET=2: {len(results)} invocations, "
          f"docs after each: {[r['docs'] for r in results]}")
    assert final["complete"] and final["invocations"] == len(results) >= 2, results
    _assert_incremental(s3_client, bucket, final, full, db_name)
    written = [d["_id"] for d in _docs(s3_client, bucket, final["key"])]
    assert set(written) == expected_ids  # a change may be written twice after a resume, never lost
    assert sorted(keys_in(s3_client, bucket)) == sorted(
        [full["key"], manifest_key(full["key"]), final["key"], manifest_key(final["key"])])
    assert incomplete_uploads(s3_client, bucket) == []

    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": final["key"]})
    assert verified["ok"] and verified["docs"] == len(written), verified
    target = f"{db_name}-r"
    restored = _restore(params, target, COS_KEY="latest", SOURCE_DB=db_name, CREATE_TARGET=True, RESTORE_BATCH_SIZE=2000)
    assert restored["chain"] == [full["key"], final["key"]], restored
    assert live_docs(couch, target) == live_docs(couch, db_name)
    assert _changes(couch, target) == _changes(couch, db_name)


def test_an_incremental_of_large_documents_makes_bounded_lines(couch, db_name, bucket, s3_client, params):
    """Changed documents near Cloudant's 1 MB limit: the `_bulk_get` answer is streamed, not held, and lines end
    at LINE_BYTES, not only at DOCS_PER_LINE (30 docs of 300 KB were one 9 MB line before)."""
    from backup.backup import LINE_BYTES

    load_docs(couch, db_name, [{"_id": f"doc-{i:03d}", "n": i} for i in range(40)])
    full, _ = run_main(params)
    _update(couch, db_name, [f"doc-{i:03d}" for i in range(30)], blob="x" * 300_000)  # ~9 MB of changes
    incremental, _ = run_main({**params, **INCREMENTAL})
    assert incremental["ok"] and incremental["docs"] == 30, incremental
    body = object_body(s3_client, bucket, incremental["key"])
    lines = body.split(b"\n")[1:-1]
    assert len(lines) >= 3 and all(len(line) < LINE_BYTES + 310_000 for line in lines), [len(x) for x in lines]
    _assert_incremental(s3_client, bucket, incremental, full, db_name)
    restored = _restore(params, f"{db_name}-r", COS_KEY="latest", SOURCE_DB=db_name, CREATE_TARGET=True)
    assert restored["chain"] == [full["key"], incremental["key"]], restored
    assert live_docs(couch, f"{db_name}-r") == live_docs(couch, db_name)


def _leaves(couch: Any, db: str, doc_id: str) -> dict[str, dict[str, Any]]:
    """Every leaf revision of a doc (tombstones included), by revision: its body."""
    r = requests.get(f"{couch.url}/{db}/{requests.utils.quote(doc_id, safe='')}", params={"open_revs": "all"},
                     headers={"Accept": "application/json"}, auth=_auth(couch), timeout=30)
    r.raise_for_status()
    return {leaf["ok"]["_rev"]: leaf["ok"] for leaf in r.json() if "ok" in leaf}


def _winner(couch: Any, db: str, doc_id: str) -> dict[str, Any]:
    r = requests.get(f"{couch.url}/{db}/{requests.utils.quote(doc_id, safe='')}",
                     params={"conflicts": "true", "deleted_conflicts": "true"}, auth=_auth(couch), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_an_incremental_keeps_every_leaf_so_a_resolved_conflict_restores_as_resolved(couch, db_name, bucket,
                                                                                      s3_client, params):
    """`_changes` lists every leaf (style=all_docs) and each is read: when the app resolves a conflict by deleting
    the winning leaf, the incremental carries the tombstone, and the restored chain's winner is the source's (with
    the winning leaf only, the full's old winner stayed live in the target and won again: deleted content, restored
    as a success)."""
    a, b, c, d, root = "a" * 32, "b" * 32, "c" * 32, "d" * 32, "1" * 32
    # (new_edits:false may answer nothing per doc: checked by reading the leaves back.)
    load_docs(couch, db_name, [
        {"_id": "resolved", "_rev": f"2-{b}", "_revisions": {"start": 2, "ids": [b, root]}, "side": "b"},
        {"_id": "resolved", "_rev": f"2-{a}", "_revisions": {"start": 2, "ids": [a, root]}, "side": "a"},
        {"_id": "late", "_rev": f"1-{root}", "_revisions": {"start": 1, "ids": [root]}, "v": 1},
    ], new_edits=False)
    _check(load_docs(couch, db_name, [{"_id": "plain", "v": 1}]))
    assert set(_leaves(couch, db_name, "resolved")) == {f"2-{a}", f"2-{b}"}
    assert _winner(couch, db_name, "resolved")["_rev"] == f"2-{b}"  # same depth: the higher revision id wins
    full, _ = run_main(params)
    assert full["ok"] and full["docs"] == 4 and full["conflict_leaves"] == 1, full  # both leaves of "resolved"
    assert {(x["_id"], x["_rev"]) for x in _docs(s3_client, bucket, full["key"])} >= {("resolved", f"2-{b}")}

    # The app resolves the conflict by deleting the winning leaf; another doc gets a conflict (two children of
    # its only revision, as a replication would bring them); a plain update.
    r = requests.delete(f"{couch.url}/{db_name}/resolved", params={"rev": f"2-{b}"}, auth=_auth(couch), timeout=30)
    assert r.status_code in (200, 201) and r.json()["ok"], r.text
    tombstone = r.json()["rev"]
    load_docs(couch, db_name, [
        {"_id": "late", "_rev": f"2-{c}", "_revisions": {"start": 2, "ids": [c, root]}, "v": "c"},
        {"_id": "late", "_rev": f"2-{d}", "_revisions": {"start": 2, "ids": [d, root]}, "v": "d"},
    ], new_edits=False)
    _update(couch, db_name, ["plain"], v=2)
    assert _winner(couch, db_name, "resolved")["_rev"] == f"2-{a}"
    assert set(_leaves(couch, db_name, "late")) == {f"2-{c}", f"2-{d}"}

    incremental, _ = run_main({**params, **INCREMENTAL})
    _assert_incremental(s3_client, bucket, incremental, full, db_name)
    target = f"{db_name}-restored"
    restored = _restore(params, target, COS_KEY=incremental["key"], CREATE_TARGET=True)
    assert restored["ok"] and restored["chain"] == [full["key"], incremental["key"]], restored
    # The restored chain shows what the source shows: the deleted side stays deleted.
    for doc_id in ("resolved", "late", "plain"):
        assert _winner(couch, target, doc_id) == _winner(couch, db_name, doc_id), doc_id  # rev, body, conflicts
        assert _leaves(couch, target, doc_id) == _leaves(couch, db_name, doc_id), doc_id
    assert _winner(couch, target, "resolved")["side"] == "a"
    assert _leaves(couch, target, "resolved")[tombstone].get("_deleted") is True
    assert live_docs(couch, target) == live_docs(couch, db_name)

    # Each leaf of a changed doc is in the incremental once: several revisions of one id for conflicted docs only.
    written = [(x["_id"], x["_rev"], bool(x.get("_deleted"))) for x in _docs(s3_client, bucket, incremental["key"])]
    assert sorted(written) == sorted([
        ("resolved", f"2-{a}", False), ("resolved", tombstone, True),  # every leaf of a changed doc, the tombstone too
        ("late", f"2-{c}", False), ("late", f"2-{d}", False),
        ("plain", _winner(couch, db_name, "plain")["_rev"], False),  # a doc without conflicts: once
    ])
    assert incremental["docs"] == len(written) == len(set(written))  # several revisions of one id, each once


@pytest.mark.parametrize("entry", [
    pytest.param({"docs": []}, id="no-docs"),
    pytest.param({}, id="docs-missing"),
    pytest.param({"docs": [{}]}, id="an-answer-neither-ok-nor-error"),
])
def test_a_bulk_get_entry_without_the_revision_fails_the_incremental(couch, db_name, bucket, s3_client, params,
                                                                     couch_proxy, entry):
    """An entry of the `_bulk_get` answer that holds neither the revision nor an error for it (the count of entries
    being right) would skip a change silently: the incremental fails, naming the doc and the revision."""
    load_docs(couch, db_name, [{"_id": f"old-{i}"} for i in range(3)])
    full, _ = run_main({**params, "CLOUDANT_URL": couch_proxy.url})  # the incremental's server: the same URL
    assert full["ok"], full
    before = sorted(keys_in(s3_client, bucket))
    _check(load_docs(couch, db_name, [{"_id": "changed", "v": 1}]))
    rev = _winner(couch, db_name, "changed")["_rev"]
    body = json.dumps({"results": [{"id": "changed", **entry}]}).encode()
    rule = couch_proxy.add_rule(r"^POST /[^/]+/_bulk_get", Fault.status(200, body=body))
    result, _ = run_main({**params, **INCREMENTAL, "CLOUDANT_URL": couch_proxy.url})
    assert rule.hits == 1
    assert not result.get("ok") and result.get("kind") == "cloudant", result
    assert "'changed'" in result["error"] and rev in result["error"], result
    assert sorted(keys_in(s3_client, bucket)) == before and incomplete_uploads(s3_client, bucket) == []
