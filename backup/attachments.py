"""Attachments in the backup file, as couchbackup's `--attachments` files hold them (pure, no I/O).

A server answers a read with `attachments=true` as `{"content_type", "revpos", "digest", "data": base64}`;
couchbackup's files hold `{"contentType", "data", "digest", "revpos"}` (its SDK's names), and couchrestore
takes the content type only from `contentType`. So a backup renames `content_type` to `contentType`, and a
restore renames it back. A stub (`"stub": true`, no data) is what a backup without attachments holds: it
cannot be written (412 missing_stub), so a restore leaves it out and counts the document.
"""

from __future__ import annotations

import base64
from typing import Any

from backup.errors import FormatError
from backup.format import doc_json

# Members of a server's attachment that describe how it answered, not the attachment: never in a backup.
_ANSWER_ONLY = ("content_type", "stub", "length", "follows", "encoding", "encoded_length")


def attachments_of(doc: Any) -> dict[str, Any] | None:
    """The document's `_attachments` object when it has one with entries."""
    if not isinstance(doc, dict):
        return None
    attachments = doc.get("_attachments")
    return attachments if isinstance(attachments, dict) and attachments else None


def stub_bytes(doc: Any) -> int | None:
    """The bytes of the document's attachment stubs (their `length`), or None when it has no stub."""
    attachments = attachments_of(doc)
    if attachments is None:
        return None
    stubs = [a for a in attachments.values() if isinstance(a, dict) and a.get("stub")]
    if not stubs:
        return None
    return sum(a["length"] for a in stubs if isinstance(a.get("length"), int))


def to_backup(doc: dict[str, Any]) -> dict[str, Any]:
    """A document read with its attachments' data, in the backup's form (in place): `contentType`, data, digest,
    revpos, as couchbackup writes them. Stubs stay stubs."""
    attachments = attachments_of(doc)
    if attachments is None:
        return doc
    for name, attachment in list(attachments.items()):
        if not isinstance(attachment, dict) or "data" not in attachment:
            continue
        inline = {"contentType": attachment.get("content_type", attachment.get("contentType"))}
        inline.update((k, v) for k, v in attachment.items() if k not in _ANSWER_ONLY and k != "contentType")
        attachments[name] = inline
    return doc


def to_server(doc: dict[str, Any]) -> bool:
    """A document of a backup file, made writable (in place): inline attachments get `content_type` from
    `contentType`, stubs are left out (a document that had only stubs loses `_attachments`). True when it lost a
    stub: the backup did not hold that attachment."""
    attachments = attachments_of(doc)
    if attachments is None:
        return False
    dropped = False
    for name, attachment in list(attachments.items()):
        if not isinstance(attachment, dict):
            continue
        if attachment.get("stub") and "data" not in attachment:
            del attachments[name]
            dropped = True
        elif "contentType" in attachment:
            content_type = attachment.pop("contentType")
            attachment.setdefault("content_type", content_type)
    if not attachments:
        del doc["_attachments"]
    return dropped


def data_bytes(doc: Any) -> int:
    """Bytes of inline attachment data (base64 text) the document carries: what its request weighs beyond its body."""
    attachments = attachments_of(doc)
    if attachments is None:
        return 0
    return sum(len(a["data"]) for a in attachments.values() if isinstance(a, dict) and isinstance(a.get("data"), str))


def multipart(doc: dict[str, Any], boundary: str) -> bytes:
    """A document with inline attachments as a `multipart/related` body for `PUT /db/doc?new_edits=false` (how the
    replicator writes attachments): the JSON first, its attachments marked `follows` with their length, then each
    attachment's bytes in the order of `_attachments`. Binary, so a 10 MB attachment (Cloudant's cap) is a 10 MB
    request, not the 13.3 MB of its base64, above Cloudant's ~11 MB request limit."""
    attachments = attachments_of(doc) or {}
    parts: list[tuple[str, str, bytes]] = []
    described: dict[str, Any] = {}
    for name, attachment in attachments.items():
        if isinstance(attachment, dict) and isinstance(attachment.get("data"), str):
            try:
                data = base64.b64decode(attachment["data"], validate=True)
            except ValueError:
                raise FormatError(f"document {doc.get('_id')!r}: the data of its attachment {name!r} is not "
                                  "base64") from None
            content_type = str(attachment.get("content_type") or "application/octet-stream")
            # No digest: CouchDB checks a `follows` attachment's bytes against it, and the digest it reported of a
            # compressible type (text, JSON) is of its compressed form, never of these bytes.
            described[name] = {**{k: v for k, v in attachment.items() if k not in ("data", "digest")},
                               "follows": True, "length": len(data), "content_type": content_type}
            parts.append((name, content_type, data))
        else:
            described[name] = attachment
    head = {**doc, "_attachments": described}
    out = [f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode(), doc_json(head)]
    for name, content_type, data in parts:
        # The parts match the `follows` attachments by order (CouchDB) or by filename (pouchdb-server).
        filename = name.replace("\\", "\\\\").replace('"', '\\"').replace("\r", " ").replace("\n", " ")
        out += [f'\r\n--{boundary}\r\nContent-Disposition: attachment; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n".encode(), data]
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out)
