"""A restored chain equals the source exactly (issue 12, points 6 and 9), against real servers.

* Stemmed histories: a doc edited more times between two backups than `_revs_limit` (1000; pouchdb-server's
  cannot be lowered) has, in the incremental, `_revisions` that no longer reach the revision the target holds,
  so `new_edits: false` grafts a second branch: a deletion came back undone, an update gained a conflict.
  Long histories are written here with `new_edits: false` (one request, not 1,005 PUTs of ~11 ms each).
* Design documents last: a `validate_doc_update` written before the older documents rejects them
  (pouchdb-server runs it for `new_edits: false` writes too, as CouchDB does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack import FaultProxy
from tests.helpers import cos_params, couch_params, live_docs, load_docs, object_lines, run_main

pytestmark = pytest.mark.integration
INCREMENTAL = {"BACKUP_MODE": "incremental"}
EDITS = 1005  # past the 1000 revisions pouchdb-server (and CouchDB by default) keeps
VALIDATION = "function (doc) { if (!doc._deleted && !doc.kind) { throw({forbidden: 'kind is required'}); } }"


@pytest.fixture
def params(couch, seaweed, db_name, bucket):
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}


@pytest.fixture
def couch_proxy(couch) -> Iterator[FaultProxy]:
    with FaultProxy(couch.url, upstream_timeout=60) as proxy:
        yield proxy


def _auth(couch: Any) -> Any:
    return tuple(couch.admin) if couch.admin else None


def _hash(doc_id: str, branch: str, gen: int) -> str:
    return hashlib.md5(f"{doc_id}/{branch}/{gen}".encode()).hexdigest()


def _revision(doc_id: str, gen: int, branch: str = "main", fork: int = 0, **body: Any) -> dict[str, Any]:
    """A revision at `gen` with its whole history: gens 1..fork of the main branch, then `branch` up to `gen`
    (as `gen - 1` edits of one document would make it)."""
    ids = [_hash(doc_id, branch if g > fork else "main", g) for g in range(gen, 0, -1)]
    return {"_id": doc_id, "_rev": f"{gen}-{ids[0]}", "_revisions": {"start": gen, "ids": ids}, **body}


def _write(couch: Any, db: str, docs: list[dict[str, Any]]) -> None:
    load_docs(couch, db, docs, new_edits=False)  # (pouchdb-server answers [] for new_edits:false)


def _quoted(doc_id: str) -> str:
    return requests.utils.quote(doc_id, safe="")


def _changes(couch: Any, db: str) -> dict[str, tuple[str, bool]]:
    """Every id the database knows: its winning revision and whether it is deleted."""
    r = requests.get(f"{couch.url}/{db}/_changes", auth=_auth(couch), timeout=120)
    r.raise_for_status()
    return {c["id"]: (c["changes"][0]["rev"], bool(c.get("deleted"))) for c in r.json()["results"]}


def _state(couch: Any, db: str, doc_id: str) -> dict[str, Any]:
    """What a reader sees of a doc: winning revision, deleted or not, its conflicts, and its body when live."""
    rev, deleted = _changes(couch, db)[doc_id]
    r = requests.get(f"{couch.url}/{db}/{_quoted(doc_id)}", params={"conflicts": "true"}, auth=_auth(couch), timeout=30)
    if deleted:
        assert r.status_code == 404, r.text
        return {"rev": rev, "deleted": True}
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["_rev"] == rev
    return {"rev": rev, "deleted": False, "conflicts": sorted(doc.pop("_conflicts", [])), "doc": doc}


def _assert_same(couch: Any, source: str, target: str, ids: list[str]) -> None:
    for doc_id in ids:
        assert _state(couch, target, doc_id) == _state(couch, source, doc_id), doc_id
    assert live_docs(couch, target) == live_docs(couch, source)
    assert _changes(couch, target) == _changes(couch, source)


def _restore(params: dict[str, Any], target: str, **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, "OPERATION": "restore", "CLOUDANT_DB": target, "COS_KEY": "latest",
                          "SOURCE_DB": params["CLOUDANT_DB"], "CREATE_TARGET": True, **extra})
    assert result.get("ok"), result
    return result


def _backup(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, **INCREMENTAL, **extra})
    assert result.get("ok") and result["complete"], result
    return result


def _stemmed_in(s3: Any, bucket: str, key: str) -> dict[str, dict[str, Any]]:
    """The docs of a backup object whose `_revisions` stop short of the first revision, by id."""
    docs = [doc for line in object_lines(s3, bucket, key)[1:] for doc in line]
    return {d["_id"]: d for d in docs if d["_revisions"]["start"] - len(d["_revisions"]["ids"]) + 1 > 1}


def test_a_doc_edited_past_revs_limit_then_deleted_stays_deleted(couch, db_name, bucket, s3_client, params):
    _write(couch, db_name, [_revision("gone", 3, v=3), _revision("other", 1, v=1)])
    full = _backup(params)
    assert full["kind"] == "full"
    _write(couch, db_name, [_revision("gone", EDITS + 1, _deleted=True)])  # 1,005 edits, then deleted
    assert _state(couch, db_name, "gone")["deleted"]
    incremental = _backup(params)
    stemmed = _stemmed_in(s3_client, bucket, incremental["key"])
    assert set(stemmed) == {"gone"} and len(stemmed["gone"]["_revisions"]["ids"]) == 1000  # the premise

    target = f"{db_name}-r"
    restored = _restore(params, target)
    assert restored["chain"] == [full["key"], incremental["key"]]
    assert requests.get(f"{couch.url}/{target}/gone", auth=_auth(couch), timeout=30).status_code == 404
    _assert_same(couch, db_name, target, ["gone", "other"])
    assert restored["stale_leaves_closed"] == 1


def test_a_doc_edited_past_revs_limit_has_the_sources_winner_and_no_conflict(couch, db_name, bucket, s3_client,
                                                                            params, monkeypatch):
    ids = ["live", "_design/edited", *(f"many-{i}" for i in range(4))]
    _write(couch, db_name, [_revision(i, 3, v=3) for i in ids] + [_revision("plain", 2, v=2)])
    full = _backup(params)
    _write(couch, db_name, [_revision(i, EDITS, v=EDITS) for i in ids] + [_revision("plain", 3, v=3)])
    first = _backup(params)
    assert set(_stemmed_in(s3_client, bucket, first["key"])) == set(ids)
    monkeypatch.setattr("backup.restore.STALE_CHECK_IDS", 2, raising=False)  # several checks within one object

    target = f"{db_name}-r"
    restored = _restore(params, target, RESTORE_BATCH_SIZE=3)
    assert restored["chain"] == [full["key"], first["key"]]
    _assert_same(couch, db_name, target, [*ids, "plain"])
    assert _state(couch, target, "live")["conflicts"] == [] and _state(couch, target, "live")["rev"].startswith("1005-")
    assert restored["stale_leaves_closed"] == len(ids)

    # Applied again: the same tombstones (deterministic revisions), nothing more to close.
    again = _restore(params, target, ALLOW_NON_EMPTY_TARGET=True, CREATE_TARGET=False)
    assert again.get("stale_leaves_closed", 0) == 0, again
    _assert_same(couch, db_name, target, [*ids, "plain"])

    # A further incremental of the same (still stemmed) docs extends the restored branch.
    _write(couch, db_name, [_revision(i, EDITS + 2, v=EDITS + 2) for i in ids[:2]])
    second = _backup(params)
    restored = _restore(params, f"{db_name}-r2")
    assert restored["chain"] == [full["key"], first["key"], second["key"]]
    _assert_same(couch, db_name, f"{db_name}-r2", [*ids, "plain"])


def _conflict_branch(doc_id: str, main_wins: bool) -> str:
    """A branch name whose gen-2 revision loses (or wins) against the main branch's: the higher hash wins."""
    main = _hash(doc_id, "main", 2)
    return next(name for name in (f"b{i}" for i in range(100)) if (_hash(doc_id, name, 2) < main) == main_wins)


def test_a_real_conflict_is_kept_as_the_source_has_it(couch, db_name, bucket, s3_client, params):
    """A conflicted doc whose main branch is then edited past `_revs_limit`: the other branch is a real conflict
    and stays (no false positive), whichever branch the full backup held."""
    branches = {"c-a": _conflict_branch("c-a", main_wins=True), "c-b": _conflict_branch("c-b", main_wins=False)}
    docs = [_revision("plain-conflict", 2, fork=1, v=1), _revision("plain-conflict", 2, branch="x", fork=1, v=2)]
    for doc_id, other in branches.items():
        docs += [_revision(doc_id, 2, fork=1, v="main"), _revision(doc_id, 2, branch=other, fork=1, v=other)]
    _write(couch, db_name, docs)
    full = _backup(params)
    held = [(d["_id"], d["_rev"]) for line in object_lines(s3_client, bucket, full["key"])[1:] for d in line]
    # The full holds both leaves of each (in the order the server answers them: pouchdb-server's varies).
    for doc_id in branches:
        assert sorted(rev for i, rev in held if i == doc_id) == sorted(
            [_revision(doc_id, 2)["_rev"], _revision(doc_id, 2, branch=branches[doc_id], fork=1)["_rev"]])
    _write(couch, db_name, [_revision(i, EDITS, v="edited") for i in branches]
           + [_revision("plain-conflict", 3, v=3)])
    for doc_id in branches:
        assert len(_state(couch, db_name, doc_id)["conflicts"]) == 1
    incremental = _backup(params)
    assert set(_stemmed_in(s3_client, bucket, incremental["key"])) == set(branches)

    target = f"{db_name}-r"
    restored = _restore(params, target)
    assert restored["chain"] == [full["key"], incremental["key"]]
    _assert_same(couch, db_name, target, [*branches, "plain-conflict"])
    # The old main leaf of each (the full holds both leaves, the edited main branch is stemmed); c-b's other leaf
    # (like c-a's) is the source's conflict and stays.
    assert restored["stale_leaves_closed"] == 2


def test_docs_without_stemmed_histories_cost_no_extra_request(couch, db_name, params, couch_proxy):
    """Conflicts, updates and deletions with whole histories: the restore reads nothing of the target's leaves."""
    _write(couch, db_name, [_revision("c", 2, fork=1, v=1), _revision("c", 2, branch="x", fork=1, v=2),
                            *(_revision(f"d-{i}", 1, v=i) for i in range(20))])
    _backup(params)
    _write(couch, db_name, [_revision("c", 5, fork=1, v=5), _revision("d-0", 4, v=4),
                            _revision("d-1", 2, _deleted=True)])
    last = _backup(params)
    target = f"{db_name}-r"
    restored = _restore({**params, "CLOUDANT_URL": couch_proxy.url}, target, COS_KEY=last["key"])
    assert len(restored["chain"]) == 2 and "stale_leaves_closed" not in restored
    asked = [(method, "/".join(path.split("?")[0].split("/")[2:])) for _, method, path, _ in couch_proxy.events]
    assert [a for a in asked if a[1] not in ("", "_bulk_docs")] == [], asked
    assert asked.count(("POST", "_bulk_docs")) == restored["batches"]
    _assert_same(couch, db_name, target, ["c", "d-0", "d-1"])


def _require_kind(couch: Any, db: str) -> None:
    """A design doc whose validate_doc_update rejects live docs without `kind` (older docs lack it)."""
    r = requests.put(f"{couch.url}/{db}/_design/rules", json={"validate_doc_update": VALIDATION}, auth=_auth(couch),
                     timeout=30)
    assert r.status_code == 201, r.text
    assert requests.post(f"{couch.url}/{db}", json={"n": 1}, auth=_auth(couch), timeout=30).status_code == 403


@pytest.mark.parametrize("held", [pytest.param(None, id="held-in-memory"), pytest.param(1, id="read-again")])
def test_a_validate_doc_update_does_not_reject_the_older_docs_of_a_full_backup(couch, db_name, params, monkeypatch,
                                                                                held):
    """1,200 docs without `kind`, then a design doc whose validate_doc_update requires it (it sorts before them).
    `read-again`: more design docs than may be held in memory: they are read again from the object at the end."""
    if held is not None:
        monkeypatch.setattr("backup.restore.DESIGN_DOCS_HELD_BYTES", held, raising=False)
    _write(couch, db_name, [{"_id": f"doc-{i:05d}", "_rev": f"1-{_hash('d', str(i), 1)}", "n": i} for i in range(1200)])
    _require_kind(couch, db_name)
    full = _backup(params)
    assert full["docs"] == 1201

    restored, log = run_main({**params, "OPERATION": "restore", "COS_KEY": full["key"], "CLOUDANT_DB": f"{db_name}-r",
                              "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 100})
    assert restored.get("ok") and restored["docs"] == 1201, restored
    assert bool(log.events("design_docs_read_again")) is (held is not None)
    _assert_same(couch, db_name, f"{db_name}-r", ["_design/rules", "doc-00000", "doc-01199"])


def test_a_validate_doc_update_does_not_reject_older_leaves_of_an_incremental(couch, db_name, params):
    """A conflict leaf written before the validation function, listed after it in the incremental (its doc changed
    later): the design doc is written after it. One document per batch, one batch at a time: the order is exact."""
    _write(couch, db_name, [_revision("old", 2, fork=1, v="a"), _revision("old", 2, branch="b", fork=1, v="b"),
                            _revision("plain", 1, v=1), _revision("_design/views", 1, views={})])
    full = _backup(params)
    winner = _state(couch, db_name, "old")
    _require_kind(couch, db_name)
    _write(couch, db_name, [_revision("_design/views", 2, views={"v": {"map": "function (doc) { emit(doc.kind); }"}})])
    r = requests.put(f"{couch.url}/{db_name}/old", json={**winner["doc"], "kind": "new"}, auth=_auth(couch), timeout=30)
    assert r.status_code == 201, r.text
    incremental = _backup(params)
    assert len(_state(couch, db_name, "old")["conflicts"]) == 1

    restored = _restore(params, f"{db_name}-r", RESTORE_BATCH_SIZE=1, RESTORE_PARALLELISM=1)
    assert restored["chain"] == [full["key"], incremental["key"]]
    _assert_same(couch, db_name, f"{db_name}-r", ["_design/rules", "_design/views", "old", "plain"])
