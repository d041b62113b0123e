"""Attachments are backed up and restored (issue 15, point 1), against real servers.

A backup holds them inline in couchbackup's `--attachments` format (base64 `data`, `contentType`, `digest`,
`revpos`); a restore gives each one back with its bytes, digest and content type (`revpos` is not compared:
pouchdb-server rewrites it). With `ATTACHMENTS=false` a backup keeps only the stubs, and its restore writes the
documents without them, counting both times. couchrestore restores our files, we restore couchbackup's, and an
incremental carries every attachment added, changed or removed since its base.

Attachments are written as a client does (`PUT /db/doc/name`, plain body: pouchdb-server corrupts attachments of
gzip request bodies) with random bytes from fixed seeds.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from backup.keys import backup_key
from tests.helpers import cos_params, couch_params, live_docs, load_docs, object_lines, run_main

pytestmark = pytest.mark.integration
BIN = Path(__file__).resolve().parents[1] / "node_modules" / ".bin"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "couchbackup"
INCREMENTAL = {"BACKUP_MODE": "incremental"}
MB = 1024 * 1024

# doc id -> attachment name -> (bytes, content type)
SOURCE: dict[str, dict[str, tuple[bytes, str]]] = {
    "several": {
        "hello.txt": (b"hi", "text/plain"),
        "data.json": (b'{"a": 1}', "application/json"),
        "notes \u00fc.bin": (random.Random(3).randbytes(7), "image/png"),
        "one-mb.bin": (random.Random(1).randbytes(MB), "application/octet-stream"),
    },
    "twenty-mb": {"huge.bin": (random.Random(20).randbytes(20 * MB), "video/mp4")},
    "_design/app": {"index.html": (b"<!doctype html><p>app</p>", "text/html")},
    "edited-after": {"kept.txt": (b"written at rev 2, still there at rev 3", "text/plain")},
}
WITHOUT = ["plain", "also-plain"]  # docs without attachments


def _auth(couch: Any) -> Any:
    return tuple(couch.admin)


def _new_name() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _quoted(name: str) -> str:
    return requests.utils.quote(name, safe="")


def _doc_url(couch: Any, db: str, doc_id: str) -> str:
    design = doc_id.startswith("_design/")  # its slash stays a slash
    name = _quoted(doc_id.removeprefix("_design/") if design else doc_id)
    return f"{couch.url}/{db}/{'_design/' if design else ''}{name}"


def _get(couch: Any, db: str, doc_id: str) -> dict[str, Any]:
    r = requests.get(_doc_url(couch, db, doc_id), auth=_auth(couch), timeout=30)
    assert r.status_code == 200, (doc_id, r.text)
    return r.json()


def _put(couch: Any, db: str, doc: dict[str, Any]) -> str:
    r = requests.put(_doc_url(couch, db, doc["_id"]), json=doc, auth=_auth(couch), timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["rev"]


def _attach(couch: Any, db: str, doc_id: str, name: str, data: bytes, content_type: str) -> None:
    rev = _get(couch, db, doc_id)["_rev"]
    r = requests.put(f"{_doc_url(couch, db, doc_id)}/{_quoted(name)}", params={"rev": rev}, data=data,
                     headers={"Content-Type": content_type}, auth=_auth(couch), timeout=120)
    assert r.status_code == 201, r.text


def _detach(couch: Any, db: str, doc_id: str, name: str) -> None:
    rev = _get(couch, db, doc_id)["_rev"]
    r = requests.delete(f"{_doc_url(couch, db, doc_id)}/{_quoted(name)}", params={"rev": rev}, auth=_auth(couch),
                        timeout=30)
    assert r.status_code == 200, r.text


def _attachments(couch: Any, db: str, doc_id: str) -> dict[str, tuple[bytes, str, str]]:
    """Each attachment of the doc's winning revision as the server serves it: (bytes, content type, digest)."""
    stubs = _get(couch, db, doc_id).get("_attachments") or {}
    out = {}
    for name, stub in stubs.items():
        r = requests.get(f"{_doc_url(couch, db, doc_id)}/{_quoted(name)}", auth=_auth(couch), timeout=120)
        assert r.status_code == 200, (doc_id, name, r.text)
        assert r.headers["Content-Type"] == stub["content_type"]
        out[name] = (r.content, stub["content_type"], stub["digest"])
    return out


def _without_revpos(doc: dict[str, Any]) -> dict[str, Any]:
    """The doc as compared across a restore: its attachments' `revpos` left out (pouchdb-server rewrites it)."""
    attachments = {name: {k: v for k, v in stub.items() if k != "revpos"}
                   for name, stub in (doc.get("_attachments") or {}).items()}
    return {**doc, "_attachments": attachments} if attachments else doc


def _same_docs(couch: Any, target: str, source: str) -> None:
    """The target's live docs are the source's (ids, revisions, bodies, attachment stubs but revpos) and each
    attachment has the source's bytes, content type and digest."""
    docs = live_docs(couch, source)
    assert [_without_revpos(d) for d in live_docs(couch, target)] == [_without_revpos(d) for d in docs]
    for doc in docs:
        assert _attachments(couch, target, doc["_id"]) == _attachments(couch, source, doc["_id"]), doc["_id"]


def _manifest(s3: Any, bucket: str, key: str) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=bucket, Key=f"{key}.manifest.json")["Body"].read())


def _docs_of(s3: Any, bucket: str, key: str) -> dict[str, dict[str, Any]]:
    return {doc["_id"]: doc for line in object_lines(s3, bucket, key)[1:] for doc in line}


@pytest.fixture(scope="module")
def store(seaweed: Any) -> Iterator[tuple[Any, str]]:
    """One bucket for the module's backups (several tests read one backup)."""
    s3 = seaweed.client()
    name = _new_name()
    s3.create_bucket(Bucket=name)
    yield s3, name
    try:
        s3.delete_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - clean-up only: SeaweedFS deletes non-empty buckets
        pass


@pytest.fixture(scope="module")
def source(couch: Any) -> str:
    """Docs with attachments of a few bytes, of 1 MB and of 20 MB, a design doc with one, a doc edited after its
    attachment was added, and docs without any."""
    db = _new_name()
    load_docs(couch, db, [{"_id": doc_id, "kind": doc_id} for doc_id in [*SOURCE, *WITHOUT]])
    for doc_id, attachments in SOURCE.items():
        for name, (data, content_type) in attachments.items():
            _attach(couch, db, doc_id, name, data, content_type)
    _put(couch, db, {**_get(couch, db, "edited-after"), "edited": True})
    for doc_id, attachments in SOURCE.items():  # the premise: the server holds them as written
        assert {n: a[:2] for n, a in _attachments(couch, db, doc_id).items()} == attachments, doc_id
    assert _get(couch, db, "edited-after")["_rev"].startswith("3-")
    return db


@pytest.fixture(scope="module")
def backup(couch: Any, seaweed: Any, store: tuple[Any, str], source: str) -> dict[str, Any]:
    result, _ = run_main({**couch_params(couch, source), **cos_params(seaweed, store[1])})
    assert result.get("ok") and result["complete"], result
    assert result["docs"] == len(SOURCE) + len(WITHOUT), result
    return result


@pytest.fixture(scope="module")
def restored(couch: Any, seaweed: Any, store: tuple[Any, str], backup: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    target = _new_name()
    result, _ = run_main({**couch_params(couch, target), **cos_params(seaweed, store[1]), "OPERATION": "restore",
                          "COS_KEY": backup["key"], "CREATE_TARGET": True})
    assert result.get("ok"), result
    return target, result


@pytest.fixture(scope="module")
def stub_backup(couch: Any, seaweed: Any, store: tuple[Any, str], source: str) -> dict[str, Any]:
    result, _ = run_main({**couch_params(couch, source), **cos_params(seaweed, store[1]), "ATTACHMENTS": False})
    assert result.get("ok") and result["complete"], result
    return result


def test_a_backup_holds_every_attachment_inline_in_couchbackups_format(couch, store, source, backup):
    s3, bucket = store
    assert object_lines(s3, bucket, backup["key"])[0]["attachments"] is True
    held = _docs_of(s3, bucket, backup["key"])
    assert set(held) == {*SOURCE, *WITHOUT}
    for doc_id, attachments in SOURCE.items():
        stubs = _get(couch, source, doc_id)["_attachments"]
        assert set(held[doc_id]["_attachments"]) == set(attachments), doc_id
        for name, (data, content_type) in attachments.items():
            inline = held[doc_id]["_attachments"][name]
            assert set(inline) == {"contentType", "data", "digest", "revpos"}, (doc_id, name, set(inline))
            assert base64.b64decode(inline["data"], validate=True) == data, (doc_id, name)
            assert inline["contentType"] == content_type, (doc_id, name)
            assert inline["digest"] == stubs[name]["digest"], (doc_id, name)
    for doc_id in WITHOUT:
        assert "_attachments" not in held[doc_id], doc_id


def test_attachments_of_every_size_restore_byte_exact(couch, source, restored):
    target, result = restored
    assert result["docs"] == len(SOURCE) + len(WITHOUT), result
    assert not result.get("attachments_dropped"), result
    for doc_id, attachments in SOURCE.items():
        got = _attachments(couch, target, doc_id)
        assert {name: (data, ctype) for name, (data, ctype, _) in got.items()} == attachments, doc_id
    _same_docs(couch, target, source)


def test_a_design_document_with_an_attachment_round_trips(couch, source, restored):
    target, _ = restored
    design = _get(couch, target, "_design/app")
    assert _without_revpos(design) == _without_revpos(_get(couch, source, "_design/app"))
    assert _attachments(couch, target, "_design/app") == _attachments(couch, source, "_design/app")
    assert _attachments(couch, target, "_design/app")["index.html"][:2] == SOURCE["_design/app"]["index.html"]


def test_a_backup_without_attachments_keeps_their_stubs_and_counts_the_documents(store, source, stub_backup):
    s3, bucket = store
    assert stub_backup["attachments_skipped"] == len(SOURCE), stub_backup
    assert object_lines(s3, bucket, stub_backup["key"])[0]["attachments"] is False
    held = _docs_of(s3, bucket, stub_backup["key"])
    assert set(held) == {*SOURCE, *WITHOUT}
    for doc_id, attachments in SOURCE.items():
        assert set(held[doc_id]["_attachments"]) == set(attachments), doc_id
        for name, stub in held[doc_id]["_attachments"].items():
            assert stub.get("stub") is True and "data" not in stub, (doc_id, name, stub)
    assert stub_backup["bytes"] < MB  # 21 MB of attachments are not in it


def test_a_restore_of_a_backup_without_attachments_writes_the_documents_without_them(couch, seaweed, store, source,
                                                                                     stub_backup):
    target = _new_name()
    result, _ = run_main({**couch_params(couch, target), **cos_params(seaweed, store[1]), "OPERATION": "restore",
                          "COS_KEY": stub_backup["key"], "CREATE_TARGET": True})
    assert result.get("ok") and result["docs"] == len(SOURCE) + len(WITHOUT), result
    assert result["attachments_dropped"] == len(SOURCE), result
    restored = {d["_id"]: d for d in live_docs(couch, target)}
    for doc in live_docs(couch, source):
        expected = {k: v for k, v in doc.items() if k != "_attachments"}
        assert restored[doc["_id"]] == expected, doc["_id"]
    missing = requests.get(f"{_doc_url(couch, target, 'several')}/hello.txt", auth=_auth(couch), timeout=30)
    assert missing.status_code == 404


def test_couchrestore_restores_our_attachments(couch, compat_proxy, store, source, backup, tmp_path):
    s3, bucket = store
    path = tmp_path / "ours.txt"
    s3.download_file(bucket, backup["key"], str(path))
    assert backup["key"].endswith("Z_backup.txt.gz"), backup  # gzip, the default: `gunzip -c ours | couchrestore`
    target = _new_name()
    load_docs(couch, target, [])  # couchrestore never creates the target
    with subprocess.Popen(["gunzip", "-c", str(path)], stdout=subprocess.PIPE) as gunzip:
        proc = subprocess.run([str(BIN / "couchrestore"), "--url", compat_proxy.url_with_credentials(couch.admin),
                               "--db", target, "--attachments"], stdin=gunzip.stdout, capture_output=True, timeout=180)
    assert gunzip.returncode == 0
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    for doc_id, attachments in SOURCE.items():
        got = _attachments(couch, target, doc_id)
        assert {name: (data, ctype) for name, (data, ctype, _) in got.items()} == attachments, doc_id
    _same_docs(couch, target, source)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"couchbackup's fixtures are not in {FIXTURES}")
def test_our_restore_reads_couchbackups_attachment_fixture(couch, seaweed, store):
    """couchbackup's own `--attachments` file. Its digest is CouchDB's (of the stored, compressed text), which
    pouchdb-server recomputes from the bytes: only the bytes and the content type are compared."""
    s3, bucket = store
    key = backup_key("", "attachment-fixture", datetime.now(UTC))
    s3.put_object(Bucket=bucket, Key=key, Body=(FIXTURES / "attachment.backup").read_bytes())
    target = _new_name()
    result, _ = run_main({**couch_params(couch, target), **cos_params(seaweed, bucket), "OPERATION": "restore",
                          "COS_KEY": key, "CREATE_TARGET": True})
    assert result.get("ok") and result["docs"] == 1, result
    assert _get(couch, target, "d1")["_rev"] == "2-dfe86ede5cf44dd4c3d1436c32db4be2"
    assert {n: a[:2] for n, a in _attachments(couch, target, "d1").items()} == {
        "att.txt": (b"My attachment data", "text/plain")}


def test_an_incremental_carries_attachments_added_changed_and_removed(couch, seaweed, store):
    s3, bucket = store
    db = _new_name()
    params = {**couch_params(couch, db), **cos_params(seaweed, bucket)}
    load_docs(couch, db, [{"_id": i, "v": 1} for i in ("gains-one", "changes-one", "loses-one", "keeps-one",
                                                         "untouched")])
    _attach(couch, db, "changes-one", "a.txt", b"version 1", "text/plain")
    _attach(couch, db, "loses-one", "x.bin", random.Random(11).randbytes(5000), "application/octet-stream")
    _attach(couch, db, "loses-one", "stays.txt", b"the other one stays", "text/plain")
    _attach(couch, db, "keeps-one", "k.txt", b"kept through an edit", "text/plain")
    _attach(couch, db, "untouched", "u.bin", random.Random(12).randbytes(MB), "application/octet-stream")
    full, _ = run_main({**params, **INCREMENTAL})
    assert full.get("ok") and full["kind"] == "full", full

    _attach(couch, db, "gains-one", "new.txt", b"added after the full backup", "text/plain")
    _attach(couch, db, "changes-one", "a.txt", random.Random(13).randbytes(3000), "application/x-changed")
    _detach(couch, db, "loses-one", "x.bin")
    _put(couch, db, {**_get(couch, db, "keeps-one"), "v": 2})  # its stub kept
    load_docs(couch, db, [{"_id": "new-one", "v": 1}])
    _attach(couch, db, "new-one", "big.bin", random.Random(14).randbytes(MB), "application/octet-stream")
    incremental, _ = run_main({**params, **INCREMENTAL})
    assert incremental.get("ok") and incremental["kind"] == "incremental", incremental
    assert incremental["base"] == full["key"], incremental
    assert object_lines(s3, bucket, incremental["key"])[0]["attachments"] is True
    assert set(_docs_of(s3, bucket, incremental["key"])) == {"gains-one", "changes-one", "loses-one", "keeps-one",
                                                            "new-one"}

    target = _new_name()
    result, _ = run_main({**params, "OPERATION": "restore", "CLOUDANT_DB": target, "COS_KEY": "latest",
                          "SOURCE_DB": db, "CREATE_TARGET": True})
    assert result.get("ok") and result["chain"] == [full["key"], incremental["key"]], result
    assert set(_attachments(couch, target, "loses-one")) == {"stays.txt"}
    assert _attachments(couch, target, "changes-one")["a.txt"][:2] == (random.Random(13).randbytes(3000),
                                                                       "application/x-changed")
    _same_docs(couch, target, db)
