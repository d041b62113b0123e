"""Completing `_all_docs` pages: attachments' data and conflicting leaves read again (backup.refetch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from backup.errors import CloudantError
from backup.refetch import Refetch


def _raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


STUB = {"att": {"content_type": "text/plain", "revpos": 1, "digest": "md5-x", "length": 3, "stub": True}}
PLAIN = {"_id": "a", "_rev": "1-a", "v": 1}
WITH_STUB = {"_id": "b", "_rev": "1-b", "_attachments": STUB}
CONFLICTED = {"_id": "c", "_rev": "2-c", "_conflicts": ["2-d", "1-e"], "v": 3}
MENTIONS = {"_id": "m", "_rev": "1-m", "text": "\"_attachments\" and \"_conflicts\" in a value"}


class Server:
    """Answers `_bulk_get` for the revisions asked, in order, with attachments' data; records each request."""

    def __init__(self, answers: dict[tuple[str, str], list[dict[str, Any]]] | None = None) -> None:
        self.requests: list[list[dict[str, str]]] = []
        self.inline: list[bool] = []
        self.answers = answers or {}

    def fetch(self, items: list[dict[str, str]], attachments: bool = True) -> Iterator[dict[str, Any] | bytes]:
        self.requests.append(items)
        self.inline.append(attachments)
        for item in items:
            yield from self.answers.get((item["id"], item["rev"]), [{"_id": item["id"], "_rev": item["rev"],
                                                                      "_revisions": {"start": 1, "ids": ["x"]},
                                                                      **_data(item, attachments)}])


def _data(item: dict[str, str], inline: bool) -> dict[str, Any]:
    if item["id"] != "b":
        return {}
    if not inline:
        return {"_attachments": {"att": {**STUB["att"], "length": 3}, "zip": {**STUB["att"], "length": 4}}}
    return {"_attachments": {"att": {"content_type": "text/plain", "revpos": 1, "digest": "md5-x", "data": "YWJj"}}}


def _page(refetch: Refetch, docs: list[dict[str, Any]]) -> list[tuple[str, list[Any], bool]]:
    return [(doc_id, [json.loads(e) for e in entries], skipped)
            for doc_id, entries, skipped in refetch.page([(d["_id"], _raw(d)) for d in docs])]


def test_a_page_without_attachments_or_conflicts_costs_no_request_and_passes_through_byte_exact() -> None:
    server = Server()
    page = [(d["_id"], _raw(d)) for d in (PLAIN, MENTIONS)]
    assert list(Refetch(server.fetch, True).page(page)) == [(i, [raw], False) for i, raw in page]
    assert server.requests == []


def test_attachments_are_read_again_with_their_data_in_couchbackups_form_in_the_documents_place() -> None:
    server = Server()
    out = _page(Refetch(server.fetch, True), [PLAIN, WITH_STUB, MENTIONS])
    assert [doc_id for doc_id, _, _ in out] == ["a", "b", "m"]
    assert out[1][1][0]["_attachments"]["att"] == {"contentType": "text/plain", "revpos": 1, "digest": "md5-x",
                                                    "data": "YWJj"}
    assert server.requests == [[{"id": "b", "rev": "1-b"}]]  # one request for the page, only what it lacks


def test_without_attachments_stubs_stay_and_the_document_is_counted_as_skipped() -> None:
    server = Server()
    out = _page(Refetch(server.fetch, False), [PLAIN, WITH_STUB])
    assert out[1] == ("b", [WITH_STUB], True)
    assert server.requests == []


def test_every_conflicting_leaf_is_asked_for_winner_first() -> None:
    server = Server()
    out = _page(Refetch(server.fetch, True), [CONFLICTED, PLAIN])
    assert [e["_rev"] for e in out[0][1]] == ["2-c", "2-d", "1-e"]
    assert all("_conflicts" not in e and "_revisions" in e for e in out[0][1])
    assert server.requests == [[{"id": "c", "rev": "2-c"}, {"id": "c", "rev": "2-d"}, {"id": "c", "rev": "1-e"}]]


def test_a_conflicted_document_is_read_again_even_without_attachments_whose_stubs_then_stay() -> None:
    leaves = {("c", rev): [{"_id": "c", "_rev": rev, "_attachments": STUB}] for rev in ("2-c", "2-d", "1-e")}
    server = Server(leaves)
    doc = {**CONFLICTED, "_attachments": STUB}
    out = _page(Refetch(server.fetch, False), [doc])
    assert out[0][2] is True and len(out[0][1]) == 3
    assert server.inline == [False]  # read without the attachments' data
    assert all(entry["_attachments"] == STUB for entry in out[0][1])


def test_a_revision_answered_as_its_latest_leaf_once_is_one_entry() -> None:
    # Changed since the page was read: both revisions asked answer as the same newer leaf (latest=true).
    newer = {"_id": "c", "_rev": "3-z", "v": 4}
    server = Server({("c", "2-c"): [newer], ("c", "2-d"): [newer], ("c", "1-e"): [{"_id": "c", "_rev": "1-e"}]})
    out = _page(Refetch(server.fetch, True), [CONFLICTED])
    assert [e["_rev"] for e in out[0][1]] == ["3-z", "1-e"]


def test_an_answer_for_another_document_fails_the_read() -> None:
    server = Server({("b", "1-b"): [{"_id": "zzz", "_rev": "1-z"}]})
    with pytest.raises(CloudantError, match="did not answer"):
        _page(Refetch(server.fetch, True), [WITH_STUB])


def test_answers_beyond_what_was_asked_fail_the_read() -> None:
    server = Server({("b", "1-b"): [{"_id": "b", "_rev": "1-b"}, {"_id": "q", "_rev": "1-q"}]})
    with pytest.raises(CloudantError, match="not asked for"):
        _page(Refetch(server.fetch, True), [WITH_STUB])


def test_a_document_too_deep_to_decode_comes_back_spliced_with_its_attachments_renamed() -> None:
    deep = '{"_id":"b","_rev":"1-b","deep":' + "[" * 3000 + "]" * 3000 + ',"_attachments":{"att":{"content_type":"t/p","data":"YWJj"}}}'
    server = Server({("b", "1-b"): [deep.encode()]})  # type: ignore[list-item]
    entries = [e for _, es, _ in Refetch(server.fetch, True).page([("b", _raw(WITH_STUB))]) for e in es]
    assert len(entries) == 1
    assert b'"contentType":"t/p"' in entries[0] and b'"content_type"' not in entries[0]
    assert entries[0].count(b"[") == 3000


def test_large_attachments_are_read_as_bytes_and_spliced_in_base64() -> None:
    server = Server()
    read: list[tuple[str, str, str]] = []

    def attachment(doc_id: str, rev: str, name: str) -> bytes:
        read.append((doc_id, rev, name))
        return {"att": b"abc", "zip": b"\x00\xff\x10\x80"}[name]

    refetch = Refetch(server.fetch, True, attachment, inline_bytes=3)
    out = _page(refetch, [PLAIN, WITH_STUB, CONFLICTED])
    assert [doc_id for doc_id, _, _ in out] == ["a", "b", "c"]
    atts = out[1][1][0]["_attachments"]
    assert atts == {"att": {"contentType": "text/plain", "revpos": 1, "digest": "md5-x", "data": "YWJj"},
                    "zip": {"contentType": "text/plain", "revpos": 1, "digest": "md5-x", "data": "AP8QgA=="}}
    assert read == [("b", "1-b", "att"), ("b", "1-b", "zip")]
    # Small (conflicts only) inline in one request, the large one with stubs in another.
    assert sorted(zip(server.inline, server.requests, strict=True)) == [(False, [{"id": "b", "rev": "1-b"}]), (True, [
        {"id": "c", "rev": "2-c"}, {"id": "c", "rev": "2-d"}, {"id": "c", "rev": "1-e"}])]


def test_an_attachment_shorter_than_its_stub_fails_the_read() -> None:
    refetch = Refetch(Server().fetch, True, lambda doc_id, rev, name: b"ab", inline_bytes=1)
    with pytest.raises(CloudantError, match="2 bytes arrived, its stub says 3"):
        _page(refetch, [WITH_STUB])


def test_a_design_documents_large_attachments_come_inline() -> None:
    """The SDK refuses a `_design/` id in `GET /db/doc/att`."""
    server = Server()
    design = {**WITH_STUB, "_id": "_design/b"}
    refetch = Refetch(server.fetch, True, lambda *_: pytest.fail("read as bytes"), inline_bytes=1)
    _page(refetch, [design])
    assert server.inline == [True]


def test_a_document_whose_values_look_like_a_placeholder_keeps_them() -> None:
    odd = "\x00cloudant-cos-backup-attachment\x000"
    answers = {("b", "1-b"): [{"_id": "b", "_rev": "1-b", "a": odd, "_attachments": {"att": {**STUB["att"]}}}]}
    refetch = Refetch(Server(answers).fetch, True, lambda *_: b"abc", inline_bytes=1)
    out = _page(refetch, [WITH_STUB])
    assert out[0][1][0]["a"] == odd and out[0][1][0]["_attachments"]["att"]["data"] == "YWJj"
