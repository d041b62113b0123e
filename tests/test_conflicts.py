"""A full backup keeps every conflict (issue 15, point 2), against real servers.

Conflicts are made as replication makes them: revisions written with `new_edits: false`, each with its whole
history. After a backup and a restore into a new database, every document has the source's winning revision and
body, the same `_conflicts`, and each conflicting leaf the same body (and attachments). A document without
conflicts costs nothing more than its row of `_all_docs`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fakes.partitioned_couch import PartitionedCouch
from tests.helpers import cos_params, couch_params, doc_url, live_docs, load_docs, object_lines, run_main

pytestmark = pytest.mark.integration


def _auth(couch: Any) -> Any:
    return tuple(couch.admin)


def _hash(doc_id: str, branch: str, gen: int) -> str:
    return hashlib.md5(f"{doc_id}/{branch}/{gen}".encode()).hexdigest()


def _leaf(doc_id: str, gen: int, branch: str = "main", fork: int = 1, **body: Any) -> dict[str, Any]:
    """A leaf at `gen` with its whole history: gens 1..fork of the main branch, then `branch` up to `gen`."""
    ids = [_hash(doc_id, branch if g > fork else "main", g) for g in range(gen, 0, -1)]
    return {"_id": doc_id, "_rev": f"{gen}-{ids[0]}", "_revisions": {"start": gen, "ids": ids}, **body}


def _inline(data: bytes, content_type: str) -> dict[str, Any]:
    return {"content_type": content_type, "data": base64.b64encode(data).decode()}


ATTACHED = {  # the leaves of "leaf-attachments": each with its own attachments
    "main": {"a.txt": (b"the main branch", "text/plain")},
    "b": {"a.txt": (b"the other branch", "text/plain"),
          "b.bin": (random.Random(5).randbytes(200_000), "application/octet-stream")},
}
LEAVES = [
    _leaf("two-live", 2, v="main"), _leaf("two-live", 2, "b", v="b"),
    _leaf("three-live", 3, v="main"), _leaf("three-live", 2, "b", v="b"), _leaf("three-live", 3, "c", v="c"),
    # the highest leaf is a deletion: the winner is the live leaf
    _leaf("deleted-highest", 2, v="live"), _leaf("deleted-highest", 3, "gone", _deleted=True),
    _leaf("deleted-over-two", 2, v="main"), _leaf("deleted-over-two", 3, "y", v="y"),
    _leaf("deleted-over-two", 4, "x", _deleted=True),
    _leaf("_design/conflicted", 2, views={}),
    _leaf("_design/conflicted", 2, "b", views={"n": {"map": "function (doc) { emit(doc.n); }"}}),
    *(_leaf("leaf-attachments", 2, branch, v=branch,
            _attachments={name: _inline(data, ctype) for name, (data, ctype) in atts.items()})
      for branch, atts in ATTACHED.items()),
    *(_leaf(f"plain-{i:02d}", 1 + i % 3, n=i) for i in range(20)),
]
# How many conflicts (live leaves beside the winner) each conflicted doc has: the premise of every test below.
CONFLICTED = {"two-live": 1, "three-live": 2, "deleted-highest": 0, "deleted-over-two": 1, "_design/conflicted": 1,
              "leaf-attachments": 1}


def _get(couch: Any, db: str, doc_id: str, **params: str) -> dict[str, Any]:
    r = requests.get(doc_url(couch, db, doc_id), params=params, headers={"Accept": "application/json"},
                     auth=_auth(couch), timeout=30)
    assert r.status_code == 200, (doc_id, params, r.text)
    doc = r.json()
    for attachment in (doc.get("_attachments") or {}).values():
        attachment.pop("revpos", None)  # pouchdb-server rewrites it on a restore
    return doc


def _state(couch: Any, db: str, doc_id: str) -> dict[str, Any]:
    """The winner (body with `_rev`), its sorted `_conflicts`, and the body of each conflicting leaf."""
    winner = _get(couch, db, doc_id, conflicts="true")
    conflicts = sorted(winner.pop("_conflicts", []))
    return {"winner": winner, "conflicts": conflicts,
            "leaves": {rev: _get(couch, db, doc_id, rev=rev) for rev in conflicts}}


def _attachment(couch: Any, db: str, doc_id: str, name: str, rev: str) -> tuple[bytes, str]:
    r = requests.get(f"{doc_url(couch, db, doc_id)}/{requests.utils.quote(name, safe='')}", params={"rev": rev},
                     auth=_auth(couch), timeout=30)
    assert r.status_code == 200, (doc_id, name, rev, r.text)
    return r.content, r.headers["Content-Type"]


@pytest.fixture(scope="module")
def store(seaweed: Any) -> Iterator[tuple[Any, str]]:
    s3 = seaweed.client()
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield s3, name
    try:
        s3.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - clean-up only: SeaweedFS deletes non-empty buckets
        pass


@pytest.fixture(scope="module")
def source(couch: Any) -> str:
    db = f"t-{uuid.uuid4().hex[:16]}"
    load_docs(couch, db, LEAVES, new_edits=False)
    for doc_id, n in CONFLICTED.items():
        assert len(_state(couch, db, doc_id)["conflicts"]) == n, doc_id  # the premise
    return db


@pytest.fixture(scope="module")
def backup(couch: Any, seaweed: Any, store: tuple[Any, str], source: str) -> dict[str, Any]:
    result, _ = run_main({**couch_params(couch, source), **cos_params(seaweed, store[1]), "DOCS_PER_LINE": 7})
    assert result.get("ok") and result["complete"], result
    return result


@pytest.fixture(scope="module")
def restored(couch: Any, seaweed: Any, store: tuple[Any, str], backup: dict[str, Any]) -> str:
    target = f"t-{uuid.uuid4().hex[:16]}"
    result, _ = run_main({**couch_params(couch, target), **cos_params(seaweed, store[1]), "OPERATION": "restore",
                          "COS_KEY": backup["key"], "CREATE_TARGET": True, "RESTORE_BATCH_SIZE": 5})
    assert result.get("ok"), result
    assert result["docs"] == len(live_docs(couch, target)) == 26, result
    return target


@pytest.mark.parametrize("doc_id", sorted(CONFLICTED))
def test_every_conflicted_document_restores_with_the_sources_winner_conflicts_and_leaves(couch, source, restored,
                                                                                         doc_id):
    assert _state(couch, restored, doc_id) == _state(couch, source, doc_id)


def test_a_deleted_highest_leaf_leaves_the_live_leaf_the_winner(couch, source, restored):
    """Gen 3 deleted beats nothing: the live gen-2 leaf wins, in the source and in the restored database."""
    for db in (source, restored):
        alone = _state(couch, db, "deleted-highest")
        assert alone["winner"]["_rev"] == _leaf("deleted-highest", 2)["_rev"] and alone["conflicts"] == [], db
        two = _state(couch, db, "deleted-over-two")
        assert two["winner"]["_rev"] == _leaf("deleted-over-two", 3, "y")["_rev"], db
        assert two["conflicts"] == [_leaf("deleted-over-two", 2)["_rev"]], db


def test_the_attachments_of_every_conflicting_leaf_restore_byte_exact(couch, source, restored):
    for branch, attachments in ATTACHED.items():
        rev = _leaf("leaf-attachments", 2, branch)["_rev"]
        assert set(_get(couch, restored, "leaf-attachments", rev=rev)["_attachments"]) == set(attachments), branch
        for name, (data, content_type) in attachments.items():
            assert _attachment(couch, source, "leaf-attachments", name, rev) == (data, content_type)  # the premise
            assert _attachment(couch, restored, "leaf-attachments", name, rev) == (data, content_type), (branch, name)


def test_documents_without_conflicts_restore_as_they_were(couch, source, restored):
    plain = [d for d in live_docs(couch, source) if d["_id"].startswith("plain-")]
    assert len(plain) == 20
    assert [d for d in live_docs(couch, restored) if d["_id"].startswith("plain-")] == plain
    for doc in plain:
        assert _state(couch, restored, doc["_id"])["conflicts"] == [], doc["_id"]


def test_the_backup_says_it_holds_conflicts_in_its_metadata_line_and_manifest(store, backup):
    s3, bucket = store
    lines = object_lines(s3, bucket, backup["key"])
    assert lines[0]["conflicts"] is True, lines[0]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{backup['key']}.manifest.json")["Body"].read())
    assert manifest["conflicts"] is True, manifest
    held = {(d["_id"], d["_rev"]) for line in lines[1:] for d in line}
    for leaf in LEAVES:  # every live leaf is in the object (deleted leaves need not be)
        if not leaf.get("_deleted"):
            assert (leaf["_id"], leaf["_rev"]) in held, leaf["_id"]


def test_a_backup_of_documents_without_conflicts_makes_no_extra_read(couch, seaweed, store):
    """50 plain docs in pages of 20: `_all_docs` asks for `conflicts` on every page, and nothing else reads a
    document (no `_bulk_get`, no `GET /db/doc`)."""
    db = f"t-{uuid.uuid4().hex[:16]}"
    load_docs(couch, db, [{"_id": f"doc-{i:03d}", "n": i} for i in range(50)])
    with PartitionedCouch(couch.url) as proxy:
        result, _ = run_main({**couch_params(couch, db), **cos_params(seaweed, store[1]), "CLOUDANT_URL": proxy.url,
                              "PAGE_SIZE": 20})
        sent = list(zip(proxy.requests, proxy.bodies, strict=True))
    assert result.get("ok") and result["complete"] and result["docs"] == 50, result
    paths = [(method, urlsplit(target).path) for (method, target), _ in sent]
    assert [p for p in paths if p[1].endswith("/_bulk_get")] == [], paths
    assert [p for p in paths if p[1].startswith(f"/{db}/") and not p[1].split("/")[2].startswith("_")] == [], paths
    pages = []
    for (_, target), body in sent:
        if urlsplit(target).path == f"/{db}/_all_docs":
            query = {k: v[-1] for k, v in parse_qs(urlsplit(target).query).items()}
            pages.append({**query, **(json.loads(body) if body else {})})
    assert len(pages) >= 3, pages  # 50 docs in pages of at most 20
    reads = [page for page in pages if page.get("include_docs") in (True, "true")]
    assert len(reads) >= 3, pages
    assert [page for page in reads if page.get("conflicts") not in (True, "true")] == [], reads
