"""Rows of an `_all_docs` response as (id, document JSON in the backup format) pairs (pure, no I/O).

Two decoders, same rows:
- `page_docs`, for a page held whole (bytes bounded by the caller): msgspec validates the JSON and hands
  each document back as its raw bytes, which go into the backup unchanged (only non-ASCII is escaped):
  no Python objects per field, no re-encoding, so a page costs milliseconds and numbers keep their exact
  digits.
- `iter_docs` (over `iter_rows`), for a response too big to hold or one msgspec refuses: rows decoded one
  at a time as the bytes arrive by the C JSON scanner (`raw_decode`), documents re-encoded; memory is one
  row plus one read chunk.

A row nested too deep for either (both recurse: RecursionError near 1,000 levels, where CouchDB takes 50,000)
is found by `jsonscan` instead, and its document spliced raw as `page_docs` does, never decoded.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from backup import jsonscan
from backup.format import ascii_json, encode_value

Doc = tuple[str, bytes | None]  # (id, document JSON; None for a row without a document)
_NO_DOC = msgspec.Raw(b"null")


class _Row(msgspec.Struct):
    id: str | None = None
    doc: msgspec.Raw = _NO_DOC


class _Page(msgspec.Struct):
    rows: list[_Row]


_PAGE = msgspec.json.Decoder(_Page)
FIRST_PAGE = 1000

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"
# Drop consumed text once this much has piled up (slicing on every row would be quadratic).
_COMPACT_AT = 1 << 20


class RowsFormatError(ValueError):
    """The response is not an `_all_docs` object with a "rows" array."""


def size_hint(info: dict[str, Any]) -> tuple[int, int] | None:
    """(documents, bytes) from a database's info, to size the first page before any is read: Cloudant and
    CouchDB report `sizes.external`, which counts attachments too, so the average errs large and the first
    page small. None when the server reports no sizes (pouchdb-server): the first page is FIRST_PAGE rows."""
    docs, external = info.get("doc_count"), (info.get("sizes") or {}).get("external")
    if isinstance(docs, int) and docs > 0 and isinstance(external, int) and external > 0:
        return docs, external
    return None


def page_limit(max_rows: int, page_bytes: int, seen_docs: int, seen_bytes: int) -> int:
    """Rows to ask for so that a page holds about `page_bytes` of documents, going by the average so far."""
    if not seen_docs:
        return min(max_rows, FIRST_PAGE)  # document sizes still unknown
    return max(1, min(max_rows, page_bytes * seen_docs // max(seen_bytes, 1)))


def page_docs(body: bytes | bytearray) -> Page | None:
    """Every row of a whole `_all_docs` response, or None when the fast decoder cannot take it (the caller
    then uses `iter_docs`, which also accepts what msgspec refuses, such as escaped lone surrogates, and rows
    nested too deep for it)."""
    try:
        page = _PAGE.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    return Page(page.rows)


class Page:
    """A whole `_all_docs` response, validated at once. Its size and ids are known before the documents are
    copied out, one by one as it is iterated, so it costs its body plus one small struct per row."""

    def __init__(self, rows: list[_Row]) -> None:
        self._rows = rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Doc]:
        return _spliced(self._rows)

    def first_id(self) -> str | None:
        return self._rows[0].id if self._rows else None

    def last_id(self) -> str | None:
        return self._rows[-1].id if self._rows else None

    def doc_sizes(self) -> tuple[int, int]:
        """(documents, their bytes as sent), for sizing the next page."""
        sizes = [len(row.doc) for row in self._rows if row.doc != _NO_DOC]
        return len(sizes), sum(sizes)


def _spliced(rows: list[_Row]) -> Iterator[Doc]:
    for row in rows:
        if row.id is None:
            raise RowsFormatError("a row of the response has no id")
        try:
            yield row.id, None if row.doc == _NO_DOC else ascii_json(bytes(row.doc))
        except UnicodeDecodeError:
            raise RowsFormatError("the response is not valid UTF-8") from None


def iter_docs(chunks: Iterable[bytes | bytearray]) -> Iterator[Doc]:
    """`page_docs` for a response streamed as byte chunks, decoded row by row."""
    for row in iter_rows(chunks):
        if "id" not in row:
            raise RowsFormatError("a row of the response has no id")
        doc = row.get("doc")
        if isinstance(doc, msgspec.Raw):  # nested too deep to decode (see `iter_rows`): spliced as sent
            yield row["id"], ascii_json(bytes(doc))
        else:
            yield row["id"], None if doc is None else encode_value(doc)


def iter_rows(chunks: Iterable[bytes | bytearray], array: str = "rows") -> Iterator[dict[str, Any]]:
    """Yield each element of the top-level `array` ("rows" of `_all_docs`, "results" of `_bulk_get`) of a
    JSON response streamed as byte chunks. Keys before it may hold only numbers (total_rows, offset).

    An element nested too deep to decode comes as a dict of its members, those too deep kept as msgspec.Raw
    (see `jsonscan.loads_shallow`): a row's "id" is decoded, its "doc" raw."""
    decode = codecs.getincrementaldecoder("utf-8")()
    source = iter(chunks)
    text, pos, ended = "", 0, False

    def more() -> bool:
        nonlocal text, ended
        if ended:
            return False
        for chunk in source:
            if chunk:
                try:
                    text += decode.decode(chunk)
                except UnicodeDecodeError:
                    raise RowsFormatError("the response is not valid UTF-8") from None
                return True
        ended = True
        try:
            text += decode.decode(b"", final=True)
        except UnicodeDecodeError:
            raise RowsFormatError("the response was cut inside a UTF-8 character") from None
        return True

    # Find `"<array>"` `:` `[`.
    name = f'"{array}"'
    while (start := text.find(name, pos)) == -1:
        pos = max(0, len(text) - len(name))
        if not more():
            raise RowsFormatError(f"no {name} array in the response")
    pos = start + len(name)
    for expected in ":[":
        while True:
            while pos < len(text) and text[pos] in _WHITESPACE:
                pos += 1
            if pos < len(text) or not more():
                break
        if pos >= len(text) or text[pos] != expected:
            raise RowsFormatError(f"expected {expected!r} after {name}")
        pos += 1

    while True:
        while True:  # skip separators up to the next row or the end of the array
            while pos < len(text) and (text[pos] in _WHITESPACE or text[pos] == ","):
                pos += 1
            if pos < len(text) or not more():
                break
        if pos >= len(text):
            raise RowsFormatError(f"the response ended inside the {name} array")
        if text[pos] == "]":
            return
        while True:
            try:
                row, end = _DECODER.raw_decode(text, pos)
                break
            except json.JSONDecodeError:
                # Cut short, or broken: read on until the text after `pos` has doubled before trying again, so a
                # row of 30 MB (an attachment inline) is not decoded again from its start for every chunk of it.
                held = len(text)
                while len(text) - pos < 2 * (held - pos) and more():
                    pass
                if len(text) == held:  # no more bytes: the row is really broken (or cut short)
                    raise RowsFormatError("a row of the response is not valid JSON (or the response was cut)") from None
            except RecursionError:  # nested too deep for json: scanned instead
                scan = jsonscan.Scan(pos)
                while True:
                    try:
                        end = scan.end(text, final=ended)
                        break
                    except jsonscan.Truncated:
                        if not more():
                            raise RowsFormatError("the response was cut inside a row") from None
                    except jsonscan.ScanError:
                        raise RowsFormatError("a row of the response is not valid JSON") from None
                row = _deep_row(text[pos:end])
                break
        yield row
        pos = end
        if pos > _COMPACT_AT:
            text, pos = text[pos:], 0


def bulk_get_answers(entry: dict[str, Any]) -> list[Any]:
    """The answers of one `_bulk_get` result from `iter_rows`, each {"ok": document} or {"error": ...}; no answer
    at all counts as an empty one. In a result too deep to decode, its "docs" are split here and a document too
    deep comes as bytes in the backup format, spliced as sent."""
    answers = entry.get("docs")
    if not isinstance(answers, msgspec.Raw):
        return answers or [{}]
    text = bytes(answers).decode("utf-8")
    if not text.startswith("["):
        return [answers]  # not a list: no answer (the caller reports it)
    return [_deep_answer(element) for element in jsonscan.elements(text)] or [{}]


def _deep_answer(text: str) -> Any:
    """One answer of a deep result, its document (if too deep itself) spliced into the backup format."""
    answer = jsonscan.loads_shallow(text)
    if isinstance(answer, dict) and isinstance(answer.get("ok"), msgspec.Raw):
        answer["ok"] = ascii_json(bytes(answer["ok"]))
    return answer


def _deep_row(text: str) -> dict[str, Any]:
    """A row too deep for json (already checked by the scanner), as a dict of its members."""
    row = jsonscan.loads_shallow(text)
    if not isinstance(row, dict):
        raise RowsFormatError("a row of the response is not a JSON object")
    return row
