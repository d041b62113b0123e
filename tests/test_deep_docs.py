"""Documents nested deeper than Python's JSON decoders go (issue 12, point 8: no document can stop a backup).

Python's json and msgspec recurse and give up near 1,000 levels; CouchDB 3.5 takes 50,000. pouchdb-server
takes about 4,090 (its JSON.stringify recurses), so these documents go to 3,000 levels. Backups, verify and
restores must carry such a document exactly, beside ordinary ones. The comparisons read the documents back
with a raised recursion limit, in the test only, after the operation has returned.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.helpers import cos_params, couch_params, live_docs, load_docs, object_body, run_main, sample_docs

pytestmark = pytest.mark.integration
DEPTHS = (1_200, 3_000)
INCREMENTAL = {"BACKUP_MODE": "incremental"}


@pytest.fixture
def params(couch, seaweed, db_name, bucket):
    return {**couch_params(couch, db_name), **cos_params(seaweed, bucket)}


@contextlib.contextmanager
def _deep_json() -> Iterator[None]:
    """Python's recursion limit raised, so json can read the deep documents back (never during an operation)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def _deep_value(depth: int, bottom: str = "bottom") -> str:
    """JSON nested `depth` levels, arrays and objects in turn, whose strings hold brackets, quotes, backslashes
    and non-ASCII (which a scanner must not take for structure)."""
    opens = ['{"k]\\"}":' if level % 2 else '["é[\\\\",' for level in range(depth)]
    closes = ["}" if level % 2 else "]" for level in reversed(range(depth))]
    return "".join(opens) + json.dumps(bottom) + "".join(closes)


def _deep_doc(doc_id: str, depth: int, rev: str | None = None, bottom: str = "bottom") -> bytes:
    head = json.dumps(doc_id) + (f',"_rev":{json.dumps(rev)}' if rev else "")
    return f'{{"_id":{head},"n":{depth},"v":{_deep_value(depth, bottom)},"after":"é"}}'.encode()


def _auth(couch: Any) -> Any:
    return tuple(couch.admin) if couch.admin else None


def _put_deep(couch: Any, db: str, doc_id: str, depth: int, rev: str | None = None, bottom: str = "bottom") -> str:
    r = requests.put(f"{couch.url}/{db}/{doc_id}", data=_deep_doc(doc_id, depth, rev, bottom),
                     headers={"Content-Type": "application/json"}, auth=_auth(couch), timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["rev"]


def _load(couch: Any, db: str) -> dict[str, str]:
    """Ordinary documents and the deep ones; their revisions by id."""
    load_docs(couch, db, sample_docs(filler=40))
    return {f"deep-{depth}": _put_deep(couch, db, f"deep-{depth}", depth) for depth in DEPTHS}


def _same_docs(couch: Any, source: str, target: str) -> None:
    with _deep_json():
        copy, original = live_docs(couch, target), live_docs(couch, source)
        assert [d["_id"] for d in copy] == [d["_id"] for d in original]
        assert copy == original


def _history(couch: Any, db: str, doc_id: str) -> Any:
    """The document with its `_revisions` (deep: read it within `_deep_json`)."""
    r = requests.get(f"{couch.url}/{db}/{doc_id}", params={"revs": "true"}, auth=_auth(couch), timeout=60)
    r.raise_for_status()
    return r.json()


def _restore(params: dict[str, Any], key: str, target: str, **extra: Any) -> dict[str, Any]:
    result, _ = run_main({**params, "OPERATION": "restore", "COS_KEY": key, "CLOUDANT_DB": target, **extra})
    return result


@pytest.mark.parametrize("page_buffer", [None, 4096], ids=["pages-spliced", "pages-streamed"])
def test_full_backup_verify_and_restore_keep_a_deep_document(couch, db_name, bucket, s3_client, params, monkeypatch,
                                                             page_buffer):
    from backup import cloudant

    if page_buffer is not None:  # streamed in small chunks: a deep row spans many of them
        monkeypatch.setattr(cloudant, "PAGE_BUFFER", page_buffer)
        monkeypatch.setattr(cloudant, "STREAM_CHUNK", 1000)
    _load(couch, db_name)
    backup, _ = run_main({**params, "PAGE_SIZE": 20, "DOCS_PER_LINE": 7})
    assert backup.get("ok") and backup["docs"] == 45 + len(DEPTHS), backup
    body = object_body(s3_client, bucket, backup["key"])
    assert max(body) < 0x80 and body.count(b"\n") == body.count(b"\n[") + 1
    assert _deep_value(3_000).encode("ascii", "backslashreplace").replace(b"\\x", b"\\u00") in body

    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": backup["key"]})
    assert verified.get("ok") and verified["docs"] == backup["docs"], verified

    restored = _restore(params, backup["key"], f"{db_name}-copy", CREATE_TARGET=True)
    assert restored.get("ok") and restored["docs"] == backup["docs"], restored
    _same_docs(couch, db_name, f"{db_name}-copy")


def test_restore_with_gzip_sends_the_deep_document_compressed(couch, db_name, params):
    _load(couch, db_name)
    backup, _ = run_main(params)
    assert backup.get("ok"), backup
    restored = _restore({**params, "CLOUDANT_GZIP": True}, backup["key"], f"{db_name}-gz", CREATE_TARGET=True)
    assert restored.get("ok") and restored["docs"] == backup["docs"], restored
    _same_docs(couch, db_name, f"{db_name}-gz")


def test_incremental_backup_of_a_changed_deep_document_restores_as_a_chain(couch, db_name, params):
    revs = _load(couch, db_name)
    full, _ = run_main({**params, **INCREMENTAL})
    assert full.get("ok") and full["kind"] == "full", full

    _put_deep(couch, db_name, "deep-3000", 3_000, rev=revs["deep-3000"], bottom="changed")
    _put_deep(couch, db_name, "deep-new", 2_500)
    load_docs(couch, db_name, [{"_id": "plain-new", "n": 1}])
    incremental, _ = run_main({**params, **INCREMENTAL})
    assert incremental.get("ok") and incremental["kind"] == "incremental" and incremental["docs"] == 3, incremental
    verified, _ = run_main({**params, "OPERATION": "verify", "COS_KEY": incremental["key"]})
    assert verified.get("ok") and verified["docs"] == 3, verified

    restored = _restore(params, incremental["key"], f"{db_name}-chain", CREATE_TARGET=True)
    assert restored.get("ok") and restored.get("chain") == [full["key"], incremental["key"]], restored
    _same_docs(couch, db_name, f"{db_name}-chain")
    with _deep_json():
        changed = _history(couch, f"{db_name}-chain", "deep-3000")
        assert changed["_rev"].startswith("2-") and changed == _history(couch, db_name, "deep-3000")
        assert changed["_revisions"]["ids"][1] == revs["deep-3000"].split("-", 1)[1]


def test_a_couchbackup_file_holding_a_deep_document_restores(couch, db_name, bucket, s3_client, params):
    """couchbackup's own layout (its metadata line, raw UTF-8), the deep document between ordinary ones, one of
    them with an escaped lone surrogate (which UTF-8, and so msgspec, cannot write)."""
    meta = b'{"name":"@cloudant/couchbackup","version":"2.11.0","mode":"shallow","attachments":false}'
    deep = _deep_doc("deep", 3_000, rev="1-0123456789abcdef0123456789abcdef")
    plain = [b'{"_id":"a","_rev":"1-aaaa","s":"\\ud800 lone","n":42}',
             '{"_id":"b","_rev":"2-bbbb","t":"日本","f":1e+16,"_revisions":{"start":2,"ids":["bbbb","cccc"]}}'.encode()]
    body = meta + b"\n[" + b",".join([plain[0], deep, plain[1]]) + b"]\n"
    key = "imports/couchbackup-deep.txt"
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)

    restored = _restore(params, key, db_name, CREATE_TARGET=True)
    assert restored.get("ok") and restored["docs"] == 3, restored
    with _deep_json():
        docs = {d["_id"]: d for d in live_docs(couch, db_name)}
        assert docs["deep"] == json.loads(deep)
    assert docs["a"] == {"_id": "a", "_rev": "1-aaaa", "s": "\ud800 lone", "n": 42}
    assert docs["b"] == {"_id": "b", "_rev": "2-bbbb", "t": "日本", "f": 1e16}
    assert _history(couch, db_name, "b")["_revisions"] == {"start": 2, "ids": ["bbbb", "cccc"]}


def test_a_deep_design_document_is_held_and_restored_last(couch, db_name, bucket, s3_client, params):
    """Design documents are held back until the others are written: a deep one too (held as JSON with its
    deep members raw, read back the same way)."""
    meta = b'{"name":"@cloudant/couchbackup","version":"2.11.0","mode":"shallow","attachments":false}'
    deep = _deep_doc("_design/deep", 3_000, rev="1-0123456789abcdef0123456789abcdef")
    body = meta + b"\n[" + b",".join([deep, b'{"_id":"a","_rev":"1-aaaa"}']) + b"]\n"
    key = "imports/couchbackup-deep-design.txt"
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    restored = _restore(params, key, db_name, CREATE_TARGET=True)
    assert restored.get("ok") and restored["docs"] == 2, restored
    with _deep_json():
        docs = {d["_id"]: d for d in live_docs(couch, db_name)}
        assert docs["_design/deep"] == json.loads(deep)
