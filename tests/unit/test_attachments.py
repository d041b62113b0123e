"""Attachments between a server's form and couchbackup's `--attachments` form (backup.attachments)."""

from __future__ import annotations

import copy
import json

from backup.attachments import data_bytes, stub_bytes, to_backup, to_server

SERVER = {"_id": "d1", "_rev": "2-a", "_attachments": {
    "att.txt": {"content_type": "text/plain", "revpos": 2, "digest": "md5-mbpDbGREDlAqGyaN6zP1DA==",
                "data": "TXkgYXR0YWNobWVudCBkYXRh"}}}
# As couchbackup's attachment.backup fixture holds it.
FILE = {"_id": "d1", "_rev": "2-a", "_attachments": {
    "att.txt": {"contentType": "text/plain", "data": "TXkgYXR0YWNobWVudCBkYXRh", "digest": "md5-mbpDbGREDlAqGyaN6zP1DA==",
                "revpos": 2}}}


def test_a_read_attachment_is_written_as_couchbackup_writes_it() -> None:
    assert to_backup(copy.deepcopy(SERVER)) == FILE


def test_answer_only_members_are_left_out_of_the_backup() -> None:
    doc = copy.deepcopy(SERVER)
    doc["_attachments"]["att.txt"].update(length=18, encoding="gzip", encoded_length=30)
    assert to_backup(doc)["_attachments"]["att.txt"] == FILE["_attachments"]["att.txt"]


def test_a_stub_stays_a_stub_in_the_backup() -> None:
    stub = {"content_type": "text/plain", "revpos": 2, "digest": "md5-x", "length": 18, "stub": True}
    doc = {"_id": "d", "_attachments": {"a": dict(stub)}}
    assert to_backup(doc)["_attachments"]["a"] == stub


def test_a_backed_up_attachment_is_written_back_with_the_servers_names() -> None:
    doc = copy.deepcopy(FILE)
    assert to_server(doc) is False
    assert doc["_attachments"]["att.txt"] == {"content_type": "text/plain", "data": "TXkgYXR0YWNobWVudCBkYXRh",
                                             "digest": "md5-mbpDbGREDlAqGyaN6zP1DA==", "revpos": 2}


def test_stubs_are_left_out_of_a_restore_and_counted() -> None:
    doc = {"_id": "d", "_attachments": {"a": {"stub": True, "length": 3}, "b": {"contentType": "x/y", "data": "YWJj"}}}
    assert to_server(doc) is True
    assert list(doc["_attachments"]) == ["b"]
    only_stubs = {"_id": "d", "_attachments": {"a": {"stub": True, "length": 3}}}
    assert to_server(only_stubs) is True
    assert "_attachments" not in only_stubs


def test_a_document_without_attachments_is_untouched() -> None:
    for doc in ({"_id": "d"}, {"_id": "d", "_attachments": {}}, {"_id": "d", "_attachments": "odd"}):
        before = copy.deepcopy(doc)
        assert to_server(doc) is False and to_backup(doc) == before and doc == before
        assert stub_bytes(doc) is None and data_bytes(doc) == 0


def test_stub_bytes_add_up_the_stubs_lengths_and_data_bytes_the_inline_data() -> None:
    doc = {"_attachments": {"a": {"stub": True, "length": 3}, "b": {"stub": True, "length": 1000}, "c": {"data": "YWJj"}}}
    assert stub_bytes(doc) == 1003
    assert data_bytes(doc) == 4
    assert stub_bytes({"_attachments": {"c": {"data": "YWJj"}}}) is None


def test_a_multipart_body_holds_the_json_with_follows_then_each_attachment_as_bytes() -> None:
    from backup.attachments import multipart

    doc = {"_id": "d", "_rev": "1-a", "_attachments": {
        'a "q".bin': {"content_type": "x/y", "data": "AP8=", "digest": "md5-of-the-compressed-form", "revpos": 1}}}
    body = multipart(doc, "B")
    head, first, end = body.split(b"\r\n--B")
    assert head.startswith(b"--B\r\nContent-Type: application/json\r\n\r\n")
    described = json.loads(head.split(b"\r\n\r\n", 1)[1])
    # No digest: CouchDB would check these bytes against it.
    assert described["_attachments"] == {'a "q".bin': {"content_type": "x/y", "revpos": 1, "follows": True, "length": 2}}
    headers, data = first.split(b"\r\n\r\n", 1)
    assert b'filename="a \\"q\\".bin"' in headers and b"Content-Type: x/y" in headers and data == b"\x00\xff"
    assert end == b"--\r\n"


def test_attachment_data_that_is_not_base64_is_a_format_error() -> None:
    import pytest

    from backup.attachments import multipart
    from backup.errors import FormatError

    with pytest.raises(FormatError, match="not base64"):
        multipart({"_id": "d", "_attachments": {"a": {"data": "not base64!"}}}, "B")
