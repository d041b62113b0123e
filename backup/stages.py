"""The stream stages between the line format and the object, in both directions (pure, no I/O):

    write: lines --> compression --> encryption --> MultipartUpload        (Stages)
    read:  verified parts --> decryption --> decompression --> lines       (plain_bytes)

An object is a sequence of *segments*: a compressor's state and an age stream's file key cannot be carried to the
next invocation, so each invocation ends its gzip member / zstd frame and its age stream (`end_segment`) before it
checkpoints or completes; and, unencrypted, a segment also ends after SEGMENT_BYTES of plain text, so that
reading can begin near any point of a big object (a restore continued in the next invocation). The manifest
records where each segment starts, in stored and in plain bytes (`Segment`); reading can begin at any segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from backup.compression import compressor, decompressed
from backup.encryption import AgeEncryptor, Identities, decrypted
from backup.errors import ConfigError

# What a client is told the object is (never Content-Encoding: a client would inflate it on download, and the
# parts' sha256 would no longer be of what it reads).
CONTENT_TYPES = {"gzip": "application/gzip", "zstd": "application/zstd", "none": "text/plain; charset=utf-8"}
ENCRYPTED_CONTENT_TYPE = "application/octet-stream"
# Plain bytes after which a segment of an unencrypted object ends: a restore continued in another invocation reads at
# most this much again (from its segment's start) to get back to its line. Each end costs a gzip trailer and a fresh
# 32 KiB window (zstd: a frame header): nothing measurable at this size.
SEGMENT_BYTES = 64 * 1024 * 1024


def content_type(codec: str, encrypted: bool) -> str:
    return ENCRYPTED_CONTENT_TYPE if encrypted else CONTENT_TYPES[codec]


@dataclass(frozen=True)
class Segment:
    stored: int  # where it starts in the object (an age stream starts there, when encrypted)
    plain: int  # where it starts in the plain text (the decompressed, decrypted couchbackup file)

    def to_json(self) -> dict[str, int]:
        return {"stored": self.stored, "plain": self.plain}


class Stages:
    """lines --> stored bytes for one invocation: its compressor, then (ENCRYPT_TO) its age encryptor.

    `offset`: the stored bytes of the object before this invocation's first output (its parts and tail), so the
    age streams' starts are offsets in the object."""

    def __init__(self, codec: str, level: int | None, recipients: Sequence[str], offset: int) -> None:
        self.codec = compressor(codec, level)
        self.seal = AgeEncryptor(recipients, offset) if recipients else None
        self.open = False  # a segment has begun and not ended
        self.segment_plain = 0  # plain bytes written into the open segment
        self.segment_bytes = SEGMENT_BYTES

    def write(self, data: bytes) -> bytes:
        self.open = self.open or bool(data)
        self.segment_plain += len(data)
        out = self.codec.write(data)
        return self.seal.write(out) if self.seal is not None else out

    @property
    def segment_full(self) -> bool:
        """The open segment holds SEGMENT_BYTES of plain text: time to end it (at a line's end). Never when
        encrypted: each segment is an age stream, and `age -d` reads an object of one stream only, which a backup
        made in one invocation then is (a restore continued in another invocation reads such an object again from
        its invocation's segment)."""
        return self.seal is None and self.segment_plain >= self.segment_bytes

    def end_segment(self) -> bytes:
        """The rest of the open segment, ended (b"" when none is open): what is stored so far decodes whole."""
        self.open, self.segment_plain = False, 0
        out = self.codec.end_segment()
        return self.seal.write(out) + self.seal.end_segment() if self.seal is not None else out

    def close(self) -> None:
        """Drop an unfinished age stream (and its thread): after a failure."""
        if self.seal is not None:
            self.seal.close()


def plain_bytes(chunks: Iterable[bytes], codec: str, segments: Sequence[Segment], first: int,
                recipients: Sequence[str] | None, identities: Identities | None, what: str) -> Iterator[bytes]:
    """The plain text of the object from the start of segment `first` on, given its stored bytes from there
    (`chunks`, already verified against the parts). `recipients`: the manifest's (None: not encrypted)."""
    stream: Iterable[bytes] = chunks
    if recipients is not None:
        stream = decrypted(stream, require(identities, recipients, what), [s.stored for s in segments],
                           offset=segments[first].stored, recipients=recipients)
    return decompressed(stream, codec)


def require(identities: Identities | None, recipients: Sequence[str], what: str) -> Identities:
    """The identities that open a backup encrypted to `recipients`; ConfigError (WrongIdentity) otherwise, with no
    I/O: called for every backup of a chain before a restore touches its target."""
    to = f" (to {', '.join(recipients)})" if recipients else " (age)"
    if identities is None:
        raise ConfigError(f"{what} is encrypted{to}: set AGE_IDENTITY to one of its private keys (the content of "
                          "the age identity file) to read it")
    if recipients:  # an age file without a manifest names no recipients: its header tells
        identities.check(recipients)
    return identities


def segment_at(segments: Sequence[Segment], plain: int) -> int:
    """The index of the segment holding plain byte `plain` (the last that starts at or before it)."""
    index = 0
    for number, segment in enumerate(segments):
        if segment.plain <= plain:
            index = number
    return index


def segments_of(records: Any) -> list[Segment]:
    """A manifest's or a checkpoint's segment records ({"stored", "plain"}); none: one segment from the start."""
    found = [Segment(int(r["stored"]), int(r["plain"])) for r in records or []]
    return found or [Segment(0, 0)]
