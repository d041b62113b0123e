"""Verified reading (pure stream stage): an object's bytes handed on one part at a time, each part only after
its size and sha256 matched the manifest's record of it.

    COS object --> verified_parts --> lines --> documents --> target

A restore writes a document only once every part holding its bytes has been checked, so a damaged or
truncated object stops the restore before any of its damaged documents reaches the target. Memory: one part.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from backup.errors import FormatError


class PartMismatch(FormatError):
    """A part of the object is not what the backup wrote (`part`: its number, from 1)."""

    def __init__(self, message: str, part: int) -> None:
        super().__init__(message)
        self.part = part


def part_at(parts: list[dict[str, Any]], offset: int) -> tuple[int, int]:
    """(index, start offset) of the part holding byte `offset` (the end of the object: one past the last)."""
    start = 0
    for index, part in enumerate(parts):
        if offset < start + part["size"]:
            return index, start
        start += part["size"]
    return len(parts), start


def verified_parts(chunks: Iterable[bytes], parts: list[dict[str, Any]], where: str,
                   first: int = 0) -> Iterator[bytearray]:
    """The bytes of parts[first:] (read from the start of part `first`), one whole part at a time, each after
    its sha256 matched. PartMismatch names the first part that does not; more bytes than the parts recorded,
    or fewer, are a mismatch too."""
    source = iter(chunks)
    pending = b""
    for index in range(first, len(parts)):
        size, body = parts[index]["size"], bytearray(pending)
        pending = b""
        for chunk in source:
            body += chunk
            if len(body) >= size:
                break
        if len(body) < size:
            raise PartMismatch(f"{where}: part {index + 1} of {len(parts)} is cut short ({len(body)} of {size} bytes): "
                               "the object is truncated", index + 1)
        if len(body) > size:
            pending = bytes(body[size:])
            del body[size:]
        if hashlib.sha256(body).hexdigest() != parts[index]["sha256"]:
            raise PartMismatch(f"{where}: part {index + 1} of {len(parts)} does not match its sha256 recorded at "
                               "backup time: the object was altered or damaged", index + 1)
        yield body  # not copied: memory is one part
    if pending or any(source):
        raise PartMismatch(f"{where}: the object is longer than the {len(parts)} parts the backup wrote",
                           len(parts))
