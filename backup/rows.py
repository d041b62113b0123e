"""Rows of an `_all_docs` response decoded one at a time as the bytes arrive (pure, no I/O).

Decoding a whole page at once holds every row as Python objects (several times the JSON's size); row
by row, memory is one row plus one read chunk, so pages can be large (few of Cloudant's scarce global
queries) and memory stays flat. Each row is decoded by the C JSON scanner (`raw_decode`).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from typing import Any

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\r\n"
# Drop consumed text once this much has piled up (slicing on every row would be quadratic).
_COMPACT_AT = 1 << 20


class RowsFormatError(ValueError):
    """The response is not an `_all_docs` object with a "rows" array."""


def iter_rows(chunks: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Yield each element of the top-level "rows" array of a JSON response streamed as byte chunks."""
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

    # Find `"rows"` `:` `[` (the top-level keys before it, total_rows and offset, hold only numbers).
    while (start := text.find('"rows"', pos)) == -1:
        pos = max(0, len(text) - 6)
        if not more():
            raise RowsFormatError("no \"rows\" array in the response")
    pos = start + 6
    for expected in ":[":
        while True:
            while pos < len(text) and text[pos] in _WHITESPACE:
                pos += 1
            if pos < len(text) or not more():
                break
        if pos >= len(text) or text[pos] != expected:
            raise RowsFormatError(f"expected {expected!r} after \"rows\"")
        pos += 1

    while True:
        while True:  # skip separators up to the next row or the end of the array
            while pos < len(text) and (text[pos] in _WHITESPACE or text[pos] == ","):
                pos += 1
            if pos < len(text) or not more():
                break
        if pos >= len(text):
            raise RowsFormatError("the response ended inside the \"rows\" array")
        if text[pos] == "]":
            return
        while True:
            try:
                row, end = _DECODER.raw_decode(text, pos)
                break
            except json.JSONDecodeError:
                if not more():  # no more bytes: the row is really broken (or cut short)
                    raise RowsFormatError("a row of the response is not valid JSON (or the response was cut)") from None
        yield row
        pos = end
        if pos > _COMPACT_AT:
            text, pos = text[pos:], 0
