"""A document whose attachments are too large for a `_bulk_docs` request among others (issue 15, point 1):
restored on its own, as `PUT /db/doc?new_edits=false` with a multipart/related body (its attachments as bytes, so
Cloudant's 10 MB attachment fits its ~11 MB request limit), against real servers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from backup.restore import MULTIPART_BYTES
from devstack import FaultProxy
from tests.helpers import cos_params, couch_params, load_docs, run_main

pytestmark = pytest.mark.integration
BIG = random.Random(5).randbytes(MULTIPART_BYTES)  # its base64 is a third larger: past the threshold
NAMES = {'say "cheese".jpg': (BIG, "image/jpeg"), "ünïcødé name.bin": (b"\x00\x01\xff", "application/octet-stream"),
         "small.txt": (b"small", "text/plain")}


@pytest.fixture
def couch_proxy(couch) -> Iterator[FaultProxy]:
    with FaultProxy(couch.url, upstream_timeout=60) as proxy:
        yield proxy


def _auth(couch: Any) -> Any:
    return tuple(couch.admin)


def _q(name: str) -> str:
    return requests.utils.quote(name, safe="")


def _attach(couch: Any, db: str, path: str, rev: str, name: str, data: bytes, content_type: str) -> str:
    """Put one attachment on the document at `path` (its URL path in `db`); returns the new revision."""
    r = requests.put(f"{couch.url}/{db}/{path}/{_q(name)}", params={"rev": rev}, data=data,
                     headers={"Content-Type": content_type}, auth=_auth(couch), timeout=60)
    assert r.status_code == 201, r.text
    return r.json()["rev"]


def _round_trip(couch: Any, seaweed: Any, bucket: str, db: str, restore_url: str | None = None) -> tuple[str, dict]:
    """Back `db` up, restore it into a new database (through `restore_url` if given); (target, restore result)."""
    params = {**couch_params(couch, db), **cos_params(seaweed, bucket)}
    backup, _ = run_main(params)
    assert backup.get("ok") and backup["complete"], backup
    target = f"{db}-r"
    restored, _ = run_main({**params, "CLOUDANT_URL": restore_url or couch.url, "CLOUDANT_DB": target,
                            "OPERATION": "restore", "COS_KEY": backup["key"], "CREATE_TARGET": "true"})
    assert restored.get("ok"), restored
    return target, restored


def test_a_document_with_large_attachments_is_restored_alone_as_multipart_with_every_attachment_exact(
        couch, seaweed, bucket, db_name, couch_proxy):
    load_docs(couch, db_name, [{"_id": f"plain-{i}", "i": i} for i in range(30)])
    rev = requests.put(f"{couch.url}/{db_name}/big", json={"v": 1}, auth=_auth(couch), timeout=30).json()["rev"]
    for name, (data, content_type) in NAMES.items():
        rev = _attach(couch, db_name, "big", rev, name, data, content_type)
    target, restored = _round_trip(couch, seaweed, bucket, db_name, couch_proxy.url)
    assert restored["docs"] == 31, restored
    puts = [path for _, method, path, _ in couch_proxy.events if method == "PUT" and path.split("?")[0].endswith("/big")]
    assert len(puts) == 1 and "new_edits=false" in puts[0], couch_proxy.events
    source = requests.get(f"{couch.url}/{db_name}/big", auth=_auth(couch), timeout=30).json()
    copy = requests.get(f"{couch.url}/{target}/big", auth=_auth(couch), timeout=30).json()
    assert copy["_rev"] == source["_rev"] and copy["v"] == 1
    assert set(copy["_attachments"]) == set(NAMES)
    for name, (data, content_type) in NAMES.items():
        r = requests.get(f"{couch.url}/{target}/big/{_q(name)}", auth=_auth(couch), timeout=60)
        assert r.content == data and r.headers["Content-Type"] == content_type, name
        assert copy["_attachments"][name]["digest"] == source["_attachments"][name]["digest"]


def test_a_design_document_with_large_attachments_backs_up_and_restores_exactly(couch, seaweed, bucket, db_name):
    """The SDK refuses a `_design/` id in `GET /db/doc/att` and `PUT /db/doc` (ValueError before any request): a
    design document's attachments come inline however large, and it is restored with `_bulk_docs`."""
    load_docs(couch, db_name, [{"_id": "_design/app", "views": {}}])
    rev = requests.get(f"{couch.url}/{db_name}/_design/app", auth=_auth(couch), timeout=30).json()["_rev"]
    _attach(couch, db_name, "_design/app", rev, "bundle.js", BIG, "application/octet-stream")
    target, restored = _round_trip(couch, seaweed, bucket, db_name)
    assert restored["docs"] == 1, restored
    r = requests.get(f"{couch.url}/{target}/_design/app/bundle.js", auth=_auth(couch), timeout=60)
    assert r.status_code == 200 and r.content == BIG


def test_a_document_holding_the_placeholder_text_keeps_it_and_its_attachment(couch, seaweed, bucket, db_name):
    """Attachments read as bytes are spliced into the document's JSON at placeholders: a document whose own values
    look like one keeps them, and its attachment lands where it belongs."""
    tricky = "\x00cloudant-cos-backup-attachment\x000"
    load_docs(couch, db_name, [{"_id": "odd", "a": tricky, "b": tricky + "x"}])
    rev = requests.get(f"{couch.url}/{db_name}/odd", auth=_auth(couch), timeout=30).json()["_rev"]
    _attach(couch, db_name, "odd", rev, "big.bin", BIG, "application/octet-stream")
    target, _ = _round_trip(couch, seaweed, bucket, db_name)
    copy = requests.get(f"{couch.url}/{target}/odd", auth=_auth(couch), timeout=30).json()
    assert (copy["a"], copy["b"]) == (tricky, tricky + "x")
    assert requests.get(f"{couch.url}/{target}/odd/big.bin", auth=_auth(couch), timeout=60).content == BIG
