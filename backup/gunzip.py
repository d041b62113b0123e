"""A stream stage: a gzip-compressed backup (`couchbackup | gzip`, as couchbackup's docs advise) inflates on the way,
recognised by its magic bytes whatever its key; any other stream passes through untouched. Pure, no I/O.

Output comes in pieces of at most `step` bytes, each inflated only when asked for: a decompression bomb (a few KB
inflating to GBs) is never held, and split_lines then refuses its over-long line as for any other object.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator

from backup.errors import FormatError

GZIP_MAGIC = b"\x1f\x8b"
STEP = 1024 * 1024  # bytes of output per piece
GZIP_WBITS = 31  # a gzip header and trailer (CRC32 and size checked), not zlib's


def gunzip_if_compressed(chunks: Iterable[bytes], step: int = STEP) -> Iterator[bytes]:
    """The stream's bytes, inflated if it starts with gzip's magic bytes, else the very chunks as they came."""
    source = iter(chunks)
    head: list[bytes] = []
    for chunk in source:  # peek until two bytes are known (chunks may be shorter)
        head.append(chunk)
        if sum(map(len, head)) >= len(GZIP_MAGIC):
            break
    stream = itertools.chain(head, source)
    if not b"".join(head).startswith(GZIP_MAGIC):
        yield from stream
        return
    yield from _inflate(stream, step)


def _inflate(chunks: Iterable[bytes], step: int) -> Iterator[bytes]:
    """Every gzip member of the stream, one after the other (as gzip -d does); zero padding after a member is
    skipped (as gzip and Python's gzip allow). A stream that ends inside a member is truncated."""
    member: zlib._Decompress | None = None  # the gzip member being read; None between members
    read = 0
    for data in _slices(chunks):
        size = len(data)
        while data:
            if member is None:
                data = data.lstrip(b"\0")
                if not data:
                    break
                member = zlib.decompressobj(wbits=GZIP_WBITS)
            yield from _pieces(member, data, step, read)
            data = member.unused_data if member.eof else b""
            if member.eof:
                member = None
        read += size
    if member is not None:
        raise FormatError(f"the gzip-compressed backup is truncated: its stream ends inside a gzip member, after {read} "
                          "compressed bytes (an incomplete upload or download?)")


INPUT = 256 * 1024  # compressed bytes handed to zlib at a time


def _slices(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The chunks in slices of at most INPUT bytes: zlib copies the input it has not used yet (`unconsumed_tail`) after
    each piece of output, so a whole verified part (5 MiB or more) handed over at once would be copied again and
    again, and held twice."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), INPUT):
            yield bytes(view[start:start + INPUT])


def _pieces(member: zlib._Decompress, data: bytes, step: int, read: int) -> Iterator[bytes]:
    """What `data` inflates to, at most `step` bytes at a time, until the member's end or until `data` is used up
    (after a full piece zlib is asked once more, with no new input: it may still hold output)."""
    while True:
        try:
            out = member.decompress(data, step)
        except zlib.error as exc:
            raise FormatError(f"the gzip-compressed backup is corrupt near compressed byte {read}: {exc}") from None
        if out:
            yield out
        data = member.unconsumed_tail
        if member.eof or (not data and len(out) < step):
            return
