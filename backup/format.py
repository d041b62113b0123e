"""The couchbackup file format: pure encoding and decoding of lines, no I/O.

Line 1: a metadata object (couchrestore reads it when `name`, `version` and `mode` are truthy).
Every further line: one JSON array of documents. Lines end with `\n` only.
JSON is written ASCII-only (non-ASCII as \\uXXXX): couchrestore 2.11 corrupts multi-byte UTF-8 that
straddles its 64 KiB read chunks, and escapes make the file immune.
"""

from __future__ import annotations

import codecs
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from backup import __version__, jsonscan
from backup.errors import FormatError

TOOL_NAME = "cloudant-cos-backup"
SKIPPED_KEPT = 100
# Longer is not a backup line (ours end at ~4 MiB; couchbackup's at 500 documents, of at most 1 MB on Cloudant):
# refuse it, never hold it.
MAX_LINE_BYTES = 512 * 1024 * 1024
RESUME_MARKER = {"marker": "@cloudant/couchbackup:resume"}
# As couchbackup writes it: a resumed full-mode run appends it to the line it was interrupted in.
RESUME_LINE = json.dumps(RESUME_MARKER, separators=(",", ":")).encode()


def metadata_line(mode: str = "shallow", **facts: Any) -> bytes:
    """The first line. `attachments` (inline data) is couchbackup's; couchrestore wants --attachments for such a
    file. Our facts (conflicts, database, start time, update_seq...) ride along; couchrestore ignores them."""
    meta = {"name": TOOL_NAME, "version": __version__, "mode": mode, "attachments": False}
    meta.update(facts)
    return encode(meta)


def raw_docs_line(docs: list[bytes]) -> bytes:
    """A line from documents already in this format's JSON (see `ascii_json`): spliced, never re-encoded."""
    return b"[" + b",".join(docs) + b"]\n"


def encode(value: Any) -> bytes:
    return encode_value(value) + b"\n"


def encode_value(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _escape_as_json(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: characters ASCII cannot hold, as JSON \\uXXXX escapes (surrogate pairs above U+FFFF)."""
    assert isinstance(error, UnicodeEncodeError)
    out = []
    for char in error.object[error.start:error.end]:
        code = ord(char)
        if code > 0xFFFF:
            code -= 0x10000
            out.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out), error.end


_JSON_ESCAPE = "cloudant-cos-backup-json-escape"
codecs.register_error(_JSON_ESCAPE, _escape_as_json)


def ascii_json(raw: bytes) -> bytes:
    """One valid JSON value (as a server sent it) in this format's form: ASCII-only and on one line.

    Outside strings valid JSON is ASCII, so every other character is inside a string, where its \\u
    escape means the same. Whitespace with a newline (a pretty-printing server) is re-encoded compactly.
    Raises UnicodeDecodeError if the bytes are not UTF-8.
    """
    if b"\n" in raw:
        try:
            return encode_value(json.loads(raw))
        except RecursionError:  # nested too deep to decode: only the whitespace goes
            raw = jsonscan.compact(raw.decode("utf-8")).encode("utf-8")
    if raw.isascii():
        return raw
    return raw.decode("utf-8").encode("ascii", _JSON_ESCAPE)


@dataclass
class Line:
    """One decoded line: docs to restore (possibly empty), or the metadata."""

    number: int
    docs: list[dict[str, Any]]
    metadata: dict[str, Any] | None = None


def is_metadata(value: Any) -> bool:
    return isinstance(value, dict) and all(value.get(k) for k in ("name", "version", "mode"))


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# json.loads accepts NaN and Infinity, which are not JSON: couchrestore (JSON.parse) refuses such a line, and
# msgspec, which writes the restore's requests, would write them as null.
_LINE = json.JSONDecoder(parse_constant=_not_json)


def loads(raw: bytes) -> Any:
    """A line's JSON value, decoded as json.loads decodes bytes. A line too deep for json (a document nested past
    ~1,000 levels) is split by jsonscan instead: each document decoded on its own, and one too deep itself as a
    dict of its top-level members, those too deep kept as msgspec.Raw (written back verbatim)."""
    text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    try:
        return _LINE.decode(text)
    except RecursionError:
        if text.startswith("["):
            return [jsonscan.loads_shallow(element) for element in jsonscan.elements(text)]
        return jsonscan.loads_shallow(text)


def doc_json(doc: dict[str, Any]) -> bytes:
    """A decoded document as JSON: msgspec writes members `LineDecoder` kept raw verbatim; what msgspec cannot
    write (a lone surrogate) goes as json.dumps writes it (ASCII, its \\u escape), raw members still verbatim."""
    try:
        return msgspec.json.encode(doc)
    except (UnicodeEncodeError, TypeError, OverflowError):
        return b"{" + b",".join(_member(key, value) for key, value in doc.items()) + b"}"


def _member(key: str, value: Any) -> bytes:
    return encode_value(key) + b":" + (bytes(value) if isinstance(value, msgspec.Raw) else encode_value(value))


def bulk_docs_json(docs: list[dict[str, Any]], new_edits: bool = False) -> bytes:
    """A `_bulk_docs` body as json.dumps writes it (ASCII: a lone surrogate as its \\u escape), for documents msgspec
    cannot write; top-level members kept raw by `LineDecoder` go in verbatim. new_edits false keeps each `_rev`."""
    docs_json = (b"{" + b",".join(_member(key, value) for key, value in doc.items()) + b"}" for doc in docs)
    return b'{"docs":[' + b",".join(docs_json) + b'],"new_edits":' + (b"true" if new_edits else b"false") + b"}"


def edit_runs(docs: list[dict[str, Any]]) -> Iterator[tuple[bool, list[dict[str, Any]]]]:
    """The docs in order as runs of one kind, (new_edits, docs): one `_bulk_docs` request each. A doc without `_rev`
    (shallow backups of couchbackup before 2.4.2) is written as a new edit, as couchrestore does (new_edits false
    refuses it: 400 "Invalid rev format"); one with `_rev` keeps it exactly."""
    for new_edits, run in itertools.groupby(docs, key=lambda doc: not doc.get("_rev")):
        yield new_edits, list(run)


class LineDecoder:
    """Decodes a backup file line by line with couchrestore's rules.

    With a metadata line every broken line is an error naming its number; without one (files from
    couchbackup before 2.10) unparsable lines are skipped, as couchrestore does.
    """

    def __init__(self) -> None:
        self.number = 0
        self.metadata: dict[str, Any] | None = None
        self.skipped: list[int] = []  # the first SKIPPED_KEPT numbers of the lines skipped
        self.skipped_count = 0

    def decode(self, raw: bytes) -> Line | None:
        self.number += 1
        text = raw.strip()
        if not text:
            return None
        try:
            value = loads(text)
        except ValueError:
            if self.metadata is not None and self.metadata.get("mode") == "full" and text.endswith(RESUME_LINE):
                return None  # a line cut by an interrupted couchbackup run, ended by its resume: couchrestore skips it
            return self._bad(f"Error on line {self.number} of backup file - cannot parse as JSON")
        if self.number == 1 and is_metadata(value):
            self.metadata = value
            return Line(self.number, [], metadata=value)
        if value == RESUME_MARKER:
            return None
        if not isinstance(value, list):
            return self._bad(f"Error on line {self.number} of backup file - not an array of documents")
        for doc in value:
            if not isinstance(doc, dict) or not isinstance(doc.get("_id"), str):
                return self._bad(f"Error on line {self.number} of backup file - an element is not a document with an _id")
        return Line(self.number, value)

    def _bad(self, message: str) -> Line | None:
        """A broken line: skipped and counted in a file without a metadata line (as couchrestore does),
        an error in one with it. Returns None so `decode` can return its result."""
        if self.metadata is None:
            self.skipped_count += 1
            if len(self.skipped) < SKIPPED_KEPT:  # a file of millions of broken lines stays small in memory
                self.skipped.append(self.number)
            return None
        raise FormatError(message)


def split_lines(chunks: Iterable[bytes | bytearray], max_line: int = MAX_LINE_BYTES) -> Iterator[tuple[bytes, bool]]:
    """Lines of a byte stream as (line without `\\n`, ended_with_newline).

    Splits on `\\n` bytes only (str.splitlines would also split on U+2028 inside JSON strings). A final
    line without a newline is still yielded, flagged, so a truncated object shows as a broken last line.
    A line longer than `max_line` is an error: an object without newlines would otherwise be held whole.
    """
    pending: list[bytes | bytearray] = []
    size = number = 0
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start:end])
            number += 1
            yield b"".join(pending), True
            pending, size = [], 0
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
            size += len(chunk) - start
            if size > max_line:
                raise FormatError(f"line {number + 1} is longer than {max_line // (1024 * 1024)} MiB: not a backup "
                                  "line (backups hold at most a few MiB of documents per line)")
    if pending:
        yield b"".join(pending), False
