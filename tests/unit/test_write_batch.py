"""restore._write_batch with a fake client: the `_bulk_docs` bodies it sends, and how it reads their answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backup.errors import CloudantError
from backup.restore import _write_batch


class Answer:
    def __init__(self, result: list[dict[str, Any]]) -> None:
        self.result = result

    def get_result(self) -> list[dict[str, Any]]:
        return self.result


class Client:
    """Records each `_bulk_docs` body; answers as CouchDB does (new_edits true: ok, id, rev per doc)."""

    service_url = "http://couch.test"

    def __init__(self, reject: str | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.reject = reject

    def post_bulk_docs(self, db: str, bulk_docs: bytes) -> Answer:
        body = json.loads(bulk_docs)
        self.bodies.append(body)
        if not body["new_edits"]:
            return Answer([])
        return Answer([{"id": d["_id"], "error": "forbidden", "reason": "no"} if d["_id"] == self.reject
                       else {"ok": True, "id": d["_id"], "rev": "1-abc"} for d in body["docs"]])


def _docs(pattern: str) -> list[dict[str, Any]]:
    """'r' a doc with `_rev`, 'n' one without, in this order."""
    return [{"_id": f"{kind}{i}", **({"_rev": f"1-{i}"} if kind == "r" else {})} for i, kind in enumerate(pattern)]


def test_a_batch_with_revisions_is_one_request_with_new_edits_false() -> None:
    client = Client()
    docs = _docs("rrr")
    assert _write_batch(client, "db", docs, 1, (2, 2)) == 3
    assert client.bodies == [{"docs": docs, "new_edits": False}]


def test_docs_without_rev_go_as_new_edits_in_requests_of_their_own_in_file_order() -> None:
    client = Client()
    docs = _docs("rnnrn")
    assert _write_batch(client, "db", docs, 1, (1, 1)) == 5
    assert [(b["new_edits"], [d["_id"] for d in b["docs"]]) for b in client.bodies] == [
        (False, ["r0"]), (True, ["n1", "n2"]), (False, ["r3"]), (True, ["n4"])]


def test_a_rejected_new_edit_fails_the_batch_and_names_the_doc() -> None:
    with pytest.raises(CloudantError, match=r"restoring batch 4 \(lines 7-9\).*1 of 3 documents were rejected.*'n1'"):
        _write_batch(Client(reject="n1"), "db", _docs("rnn"), 4, (7, 9))
