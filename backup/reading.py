"""Reading a backup object for a restore (the mirror of the backup's write side):

    COS object (ranged GET) --> verified_parts (with a manifest) --> decryption --> decompression
        --> lines, each with the offset after it in the plain text (where a continued restore starts again)

Reading can start at any line's offset. An object with a manifest is read from the start of the part holding the
segment that holds it (every part is verified whole before any of its bytes is used; a gzip member, a zstd frame,
an age stream can only be entered at a segment's start); the plain text's bytes up to the offset are skipped.
An object without one (another tool's file) is read from its start when it is compressed or encrypted
(`couchbackup | gzip`, `| zstd`, `| age`), else from the offset directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any, cast

from backup import cos
from backup.compression import decompressed, sniff
from backup.encryption import AGE_MAGIC, Identities, decrypted
from backup.format import split_lines
from backup.manifest import Manifest
from backup.resume import Position
from backup.stages import plain_bytes, require, segment_at, segments_of
from backup.verified import part_at, verified_parts


def object_lines(s3: Any, bucket: str, key: str, manifest: Manifest | None, position: Position,
                 identities: Identities | None = None) -> Iterator[tuple[bytes, int]]:
    """(line without its newline, offset after it), from `position.offset` on. Sets `position.gzip` (compressed or
    encrypted: read from the start) when the first bytes of an object without a manifest are read."""
    offset = position.offset
    for raw, ended in split_lines(_stream(s3, bucket, key, manifest, position, identities)):
        offset += len(raw) + int(ended)
        yield raw, offset


def _stream(s3: Any, bucket: str, key: str, manifest: Manifest | None, position: Position,
            identities: Identities | None) -> Iterator[bytes | bytearray]:
    if manifest is not None:
        return _with_manifest(s3, bucket, key, manifest, position.offset, identities)
    if position.gzip is False and position.offset:
        size = cos.size(s3, bucket, key)
        if size is not None and position.offset >= size:  # stopped after its last line: a ranged GET there is refused
            return iter(())
        return cos.iter_chunks(s3, bucket, key, position.offset)
    chunks = cos.iter_chunks(s3, bucket, key)
    first = next(chunks, b"")
    whole: Iterable[bytes] = itertools.chain([first], chunks)
    if first.startswith(AGE_MAGIC):  # `couchbackup | gzip | age -r ...`: one age stream
        whole = decrypted(whole, require(identities, [], cos.where(bucket, key)), [0])
        position.gzip = True
    else:
        position.gzip = sniff(first) != "none"
    return _skip(decompressed(whole, None), position.offset)


def _with_manifest(s3: Any, bucket: str, key: str, manifest: Manifest, offset: int,
                   identities: Identities | None) -> Iterator[bytes | bytearray]:
    if offset >= manifest.plain_size:
        return iter(())
    where = cos.where(bucket, key)
    if not manifest.transformed:  # the stored bytes are the plain text
        index, start = part_at(manifest.parts, offset)
        return _skip(verified_parts(cos.iter_chunks(s3, bucket, key, start), manifest.parts, where, index),
                     offset - start)
    segments = segments_of(manifest.segments)
    first = segment_at(segments, offset)
    index, start = part_at(manifest.parts, segments[first].stored)
    stored = _skip(verified_parts(cos.iter_chunks(s3, bucket, key, start), manifest.parts, where, index),
                   segments[first].stored - start)
    plain = plain_bytes(cast(Iterator[bytes], stored), manifest.compression, segments, first, manifest.recipients, identities, where)
    return _skip(plain, offset - segments[first].plain)


def _skip(chunks: Iterable[bytes | bytearray], count: int) -> Iterator[bytes | bytearray]:
    """The stream without its first `count` bytes."""
    for chunk in chunks:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:] if count else chunk
        count = 0


def plain_chunks(s3: Any, bucket: str, key: str, manifest: Manifest | None,
                 identities: Identities | None) -> Iterator[bytes | bytearray]:
    """The object's whole plain text (the couchbackup file), verified part by part when it has a manifest."""
    return _stream(s3, bucket, key, manifest, Position(), identities)
