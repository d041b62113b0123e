"""Reading a backup object for a restore (the mirror of the backup's write side):

    COS object (ranged GET) --> verified_parts (with a manifest) --> gunzip (a couchbackup `| gzip` file)
        --> lines, each with the offset after it (where a continued restore starts again)

Reading can start at any line's offset: an object with a manifest from the start of the part holding it
(that part is verified whole before any of its bytes is used), a plain file there directly, a gzip file
from its start (a deflate stream cannot be entered midway), its bytes up to the offset skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from backup import cos
from backup.format import split_lines
from backup.gunzip import GZIP_MAGIC, gunzip_if_compressed
from backup.manifest import Manifest
from backup.resume import Position
from backup.verified import part_at, verified_parts


def object_lines(s3: Any, bucket: str, key: str, manifest: Manifest | None,
                 position: Position) -> Iterator[tuple[bytes, int]]:
    """(line without its newline, offset after it), from `position.offset` on. Sets `position.gzip` when the
    first bytes are read."""
    offset = position.offset
    for raw, ended in split_lines(_stream(s3, bucket, key, manifest, position)):
        offset += len(raw) + int(ended)
        yield raw, offset


def _stream(s3: Any, bucket: str, key: str, manifest: Manifest | None,
            position: Position) -> Iterator[bytes | bytearray]:
    if manifest is not None:
        index, start = part_at(manifest.parts, position.offset)
        if index >= len(manifest.parts):
            return iter(())
        parts = verified_parts(cos.iter_chunks(s3, bucket, key, start), manifest.parts, cos.where(bucket, key), index)
        return _skip(parts, position.offset - start)
    if position.gzip is False and position.offset:
        size = cos.size(s3, bucket, key)
        if size is not None and position.offset >= size:  # stopped after its last line: a ranged GET there is refused
            return iter(())
        return cos.iter_chunks(s3, bucket, key, position.offset)
    chunks = cos.iter_chunks(s3, bucket, key)
    first = next(chunks, b"")
    position.gzip = first.startswith(GZIP_MAGIC)
    return _skip(gunzip_if_compressed(itertools.chain([first], chunks)), position.offset)


def _skip(chunks: Iterable[bytes | bytearray], count: int) -> Iterator[bytes | bytearray]:
    """The stream without its first `count` bytes."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:] if count else chunk
        count = 0
