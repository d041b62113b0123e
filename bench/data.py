"""The benchmark's documents: deterministic, ~300 B each as stored (with `_id` and `_rev`), optionally mixed
with ~100 KB documents, or documents with one binary attachment each (--attachments-mb). Pure: no I/O."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator

# Stored size of one small document, `_id` and `_rev` included (what an `_all_docs` row's `doc` holds).
SMALL_DOC_BYTES = 300
# Every MIXED_EVERY-th document of a --mixed database carries a field of BIG_DOC_BYTES (like an inline image).
MIXED_EVERY = 100
BIG_DOC_BYTES = 100_000
# `"_rev":"1-` + 32 hex digits + `",` : added by the server, counted in the stored size.
_REV_BYTES = len('"_rev":"1-00000000000000000000000000000000",')

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
          "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
          "xray", "yankee", "zulu")
_STATUSES = ("new", "paid", "shipped", "delivered", "returned")


def doc_id(i: int) -> str:
    return f"doc-{i:08d}"


def make_doc(i: int, mixed: bool = False) -> dict:
    rng = random.Random(i)
    doc = {
        "_id": doc_id(i),
        "type": "order",
        "customer": f"customer-{rng.randrange(100_000):05d}",
        "status": _STATUSES[i % len(_STATUSES)],
        "amount": round(rng.uniform(1, 1000), 2),
        "currency": "EUR",
        "created": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z",
        "items": [{"sku": f"sku-{rng.randrange(10_000):04d}", "qty": rng.randrange(1, 5)} for _ in range(2)],
        "note": "",
    }
    size = len(json.dumps(doc, separators=(",", ":"))) + _REV_BYTES
    words: list[str] = []
    room = SMALL_DOC_BYTES - size
    while room > 0:
        word = rng.choice(_WORDS)
        words.append(word[: max(room - 1, 1)] if len(word) + 1 > room else word)
        room -= len(words[-1]) + 1
    doc["note"] = " ".join(words)
    if mixed and i % MIXED_EVERY == MIXED_EVERY // 2:
        # base64 of random bytes: compresses about as badly as a real inline image or blob
        doc["blob"] = base64.b64encode(rng.randbytes(BIG_DOC_BYTES * 3 // 4)).decode("ascii")
    return doc


def doc_batches(count: int, mixed: bool = False, max_docs: int = 5000, max_bytes: int = 8 << 20) -> Iterator[bytes]:
    """`_bulk_docs` request bodies for documents 0..count-1, each at most max_docs docs / ~max_bytes."""
    parts: list[bytes] = []
    size = 0
    for i in range(count):
        data = json.dumps(make_doc(i, mixed), separators=(",", ":")).encode()
        if parts and (len(parts) >= max_docs or size + len(data) > max_bytes):
            yield b'{"docs":[' + b",".join(parts) + b"]}"
            parts, size = [], 0
        parts.append(data)
        size += len(data) + 1
    if parts:
        yield b'{"docs":[' + b",".join(parts) + b"]}"


# -- --attachments-mb: documents that each carry one binary attachment (random bytes: they compress as badly as
# a photo or an archive), written with `_bulk_docs` and base64 `data`, never gzip-encoded (pouchdb-server corrupts
# gzip-encoded attachment bodies). ~3.5x faster there than PUT /db/doc/att of the raw bytes (20 x 20 MB: ~12 s
# against ~46 s).
ATTACHMENT_NAME = "blob.bin"
ATTACHMENT_TYPE = "application/octet-stream"
MB = 1_000_000


def attachment_doc_id(i: int) -> str:
    return f"att-{i:08d}"  # sorts before doc-...: the attachment documents come first in a backup


def attachment_data(i: int, size: int) -> bytes:
    """The attachment of document i: `size` random bytes, the same on every run (a string seed is hashed, not
    Python's hash(): deterministic across processes)."""
    return random.Random(f"bench-attachment-{i}").randbytes(size)


def make_attachment_doc(i: int, size: int) -> dict:
    return {
        "_id": attachment_doc_id(i),
        "type": "file",
        "name": f"file-{i:05d}.bin",
        "bytes": size,
        "_attachments": {ATTACHMENT_NAME: {"content_type": ATTACHMENT_TYPE,
                                           "data": base64.b64encode(attachment_data(i, size)).decode("ascii")}},
    }


def attachment_batches(count: int, size: int, max_bytes: int = 16 << 20) -> Iterator[bytes]:
    """`_bulk_docs` request bodies for attachment documents 0..count-1: as many as fit in ~max_bytes, at least one
    (a 20 MB attachment is one ~27 MB request: more per request only loads slower)."""
    parts: list[bytes] = []
    size_so_far = 0
    for i in range(count):
        data = json.dumps(make_attachment_doc(i, size), separators=(",", ":")).encode()
        if parts and size_so_far + len(data) > max_bytes:
            yield b'{"docs":[' + b",".join(parts) + b"]}"
            parts, size_so_far = [], 0
        parts.append(data)
        size_so_far += len(data) + 1
    if parts:
        yield b'{"docs":[' + b",".join(parts) + b"]}"
