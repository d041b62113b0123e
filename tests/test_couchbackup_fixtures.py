"""couchbackup's own test fixtures (../shared/fixtures/couchbackup, see its README): each restores as couchrestore
restores it, or fails as couchrestore fails, leaving no target behind."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import cos_params, couch_params, db_exists, live_docs, run_main

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "couchbackup"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"couchbackup's fixtures are not in {FIXTURES}"),
]
ANIMALDB_IDS = ["_design/views101", "aardvark", "badger", "elephant", "giraffe", "kookaburra", "lemur", "llama",
                "panda", "snipe", "zebra"]


def _restore(couch, seaweed, s3_client, bucket, target: str, name: str, key: str | None = None) -> dict[str, Any]:
    """Upload the fixture as it is (under its own name unless told) and restore it into a new `target`."""
    key = key or f"couchbackup/{name}"
    s3_client.put_object(Bucket=bucket, Key=key, Body=(FIXTURES / name).read_bytes())
    result, _ = run_main({**couch_params(couch, target), **cos_params(seaweed, bucket), "OPERATION": "restore",
                          "COS_KEY": key, "CREATE_TARGET": True})
    return result


def _file_docs(name: str) -> list[dict[str, Any]]:
    """Every document of the fixture's lines that parse as arrays (couchrestore's view of it)."""
    body = (FIXTURES / name).read_bytes()
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    docs: list[dict[str, Any]] = []
    for line in body.split(b"\n"):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, list):
            docs.extend(value)
    return docs


def _rev_key(doc: dict[str, Any]) -> tuple[bool, int, str]:
    """CouchDB's winner order: a live leaf beats a deleted one, then the longer history, then the larger hash."""
    pos, _, rev_hash = doc["_rev"].partition("-")
    return not doc.get("_deleted", False), int(pos), rev_hash


def _path(couch, db: str, doc_id: str) -> str:
    design = doc_id.startswith("_design/")  # its slash stays a slash
    name = requests.utils.quote(doc_id.removeprefix("_design/") if design else doc_id, safe="")
    return f"{couch.url}/{db}/{'_design/' if design else ''}{name}"


def _get(couch, url: str, **params: str) -> requests.Response:
    return requests.get(url, params=params, headers={"Accept": "application/json"}, auth=tuple(couch.admin), timeout=30)


def _winners(couch, db: str, ids: list[str]) -> dict[str, tuple[str, bool]]:
    """Each doc's winning revision and whether it is deleted (a GET of a deleted doc says only 404)."""
    r = requests.post(f"{couch.url}/{db}/_all_docs", json={"keys": ids}, auth=tuple(couch.admin), timeout=30)
    r.raise_for_status()
    return {row["id"]: (row["value"]["rev"], row["value"].get("deleted", False)) for row in r.json()["rows"]}


def _assert_leaves_as_in_file(couch, db: str, docs: list[dict[str, Any]]) -> None:
    """The target holds exactly the file's leaf revisions of each doc (bodies and deleted state), with the winner
    and the _conflicts CouchDB derives from them."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_id.setdefault(doc["_id"], []).append({k: v for k, v in doc.items() if k != "_revisions"})
    winners = _winners(couch, db, list(by_id))
    for doc_id, leaves in by_id.items():
        stored = _get(couch, _path(couch, db, doc_id), open_revs="all")
        assert stored.status_code == 200, (doc_id, stored.text)
        assert sorted((r["ok"] for r in stored.json()), key=_rev_key) == sorted(leaves, key=_rev_key), doc_id
        winner = max(leaves, key=_rev_key)
        assert winners[doc_id] == (winner["_rev"], winner.get("_deleted", False)), doc_id
        if winner.get("_deleted"):
            continue
        body = _get(couch, _path(couch, db, doc_id), conflicts="true").json()
        conflicts = {leaf["_rev"] for leaf in leaves if leaf is not winner and not leaf.get("_deleted")}
        assert set(body.pop("_conflicts", [])) == conflicts and body == winner, doc_id


@pytest.mark.parametrize("name", ["animaldb_expected.json", "animaldb_expected.json.gz"])
def test_full_backup_restores_every_leaf_winner_deleted_doc_and_conflict(name, couch, seaweed, s3_client, bucket,
                                                                       db_name):
    docs = _file_docs(name)
    assert len(docs) == 15 and docs == _file_docs("animaldb_expected.json")
    result = _restore(couch, seaweed, s3_client, bucket, db_name, name)
    assert result.get("ok") and (result["written"], result["docs"]) == (15, 11), result  # revisions, live docs
    _assert_leaves_as_in_file(couch, db_name, docs)
    # what the fixture holds: two docs deleted, one design doc with a deleted leaf beside its live winner
    assert [d["_id"] for d in live_docs(couch, db_name)] == ANIMALDB_IDS
    views = _get(couch, _path(couch, db_name, "_design/views101"), open_revs="all").json()
    assert sorted(r["ok"]["_rev"][:3] for r in views) == ["1-a", "13-"]


def test_gzip_fixture_restores_under_a_key_without_gz(couch, seaweed, s3_client, bucket, db_name):
    result = _restore(couch, seaweed, s3_client, bucket, db_name, "animaldb_expected.json.gz",
                      key="couchbackup/animaldb.txt")
    assert result.get("ok") and (result["written"], result["docs"]) == (15, 11), result  # revisions, live docs
    _assert_leaves_as_in_file(couch, db_name, _file_docs("animaldb_expected.json"))


def test_shallow_backup_restores_its_11_docs_exactly(couch, seaweed, s3_client, bucket, db_name):
    result = _restore(couch, seaweed, s3_client, bucket, db_name, "animaldb_expected_shallow.json")
    assert result.get("ok") and result["docs"] == 11, result
    assert live_docs(couch, db_name) == _file_docs("animaldb_expected_shallow.json")


def test_old_shallow_backup_without_revs_restores_its_11_docs_as_new_edits(couch, seaweed, s3_client, bucket, db_name):
    """couchbackup before 2.4.2 wrote no `_rev`: couchrestore writes such docs as new edits (new revisions)."""
    result = _restore(couch, seaweed, s3_client, bucket, db_name, "animaldb_old_shallow.json")
    assert result.get("ok") and result["docs"] == 11, result
    restored = live_docs(couch, db_name)
    assert [d["_rev"][:2] for d in restored] == ["1-"] * 11
    assert [{k: v for k, v in d.items() if k != "_rev"} for d in restored] == _file_docs("animaldb_old_shallow.json")


def test_corrupted_backup_fails_on_line_2_and_deletes_the_target_it_created(couch, seaweed, s3_client, bucket, db_name):
    result = _restore(couch, seaweed, s3_client, bucket, db_name, "animaldb_corrupted.json")
    assert result.get("kind") == "format", result
    assert "Error on line 2 of backup file - cannot parse as JSON" in result["error"]
    assert "deleted again" in result["error"] and not db_exists(couch, db_name)


def test_old_corrupted_backup_restores_with_its_broken_line_skipped(couch, seaweed, s3_client, bucket, db_name):
    result = _restore(couch, seaweed, s3_client, bucket, db_name, "animaldb_corrupted_old.json")
    assert result.get("ok") and (result["written"], result["docs"]) == (15, 11), result  # revisions, live docs
    assert result["skipped_lines"] == [1] and result["skipped_line_count"] == 1
    _assert_leaves_as_in_file(couch, db_name, _file_docs("animaldb_expected.json"))


@pytest.mark.parametrize("name", ["animaldb_corrupted_resume.json", "animaldb_resumed_blank.json"])
def test_resumed_backup_restores(name, couch, seaweed, s3_client, bucket, db_name):
    result = _restore(couch, seaweed, s3_client, bucket, db_name, name)
    assert result.get("ok") and (result["written"], result["docs"]) == (15, 11), result  # revisions, live docs
    assert "skipped_lines" not in result
    _assert_leaves_as_in_file(couch, db_name, _file_docs("animaldb_expected.json"))
