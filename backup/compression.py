"""Compression stages of a backup object (COMPRESSION=gzip|zstd|none), pure, no I/O:

    lines --> Compressor.write / end_segment --> (encryption) --> MultipartUpload
    object --> (decryption) --> decompressed --> split_lines

A compressor's state cannot be carried from one invocation to the next, so the stream is made of *segments*:
`end_segment()` ends the current gzip member / zstd frame, making the output so far a whole, decodable prefix
(at a checkpoint and at the end); the next write starts a fresh one. gzip and zstd both read concatenated
members / frames as one stream (`gzip -d`, `zstd -d`, Python's gzip), so an object of several segments is still
an ordinary .gz / .zst file.

Reading gives at most `step` bytes per piece, each decoded only when asked for: a decompression bomb is never held.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, cast

from backup.errors import FormatError
from backup.gunzip import GZIP_MAGIC, GZIP_WBITS, STEP, gunzip_if_compressed

if TYPE_CHECKING:  # imported where zstd is used (~20 ms of every invocation's start otherwise)
    import zstandard

CODECS = ("gzip", "zstd", "none")
DEFAULT_CODEC = "gzip"
# Default levels: each compresses faster than the fastest read of a backup (~40 MB/s) on every kind of data measured
# (gzip 1: 80-180 MB/s on JSON documents; gzip 6 falls to 25 MB/s on ids and hashes, for 4-8% smaller objects).
LEVELS = {"gzip": 1, "zstd": 3}
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Frames asking for a bigger window are refused (memory): zstd levels up to 19 use 8 MiB at most; only
# --long or --ultra go beyond.
ZSTD_MAX_WINDOW = 8 * 1024 * 1024
ZSTD_READ = 128 * 1024  # compressed bytes the zstd reader takes from the stream at a time


class Compressor:
    """COMPRESSION=none: the bytes as they came. Base of the codecs: `bytes_in` / `bytes_out` count what this
    instance took and gave (one invocation's share; the caller adds up the invocations)."""

    codec = "none"

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0

    def write(self, data: bytes) -> bytes:
        """Compressed bytes for `data` (maybe none yet: the codec buffers); opens a segment if none is open."""
        self.bytes_in += len(data)
        out = self._compress(data) if data else b""
        self.bytes_out += len(out)
        return out

    def end_segment(self) -> bytes:
        """The rest of the open segment, ended (nothing when none is open): the output so far decodes whole."""
        out = self._finish()
        self.bytes_out += len(out)
        return out

    def _compress(self, data: bytes) -> bytes:
        return bytes(data)

    def _finish(self) -> bytes:
        return b""


class GzipCompressor(Compressor):
    """One gzip member per segment (zlib's gzip header: no name, mtime 0, so the same input gives the same bytes).

    A long write that deflate barely shrinks (base64 of binary attachments: it finds no matches there, and runs at
    ~30 MB/s whatever the level) becomes a member of its own, Huffman-coded only: ~3x faster and no bigger. deflate
    looks back 32 KiB only, so a member boundary beside a write this long costs nothing measurable."""

    codec = "gzip"

    def __init__(self, level: int = LEVELS["gzip"]) -> None:
        super().__init__()
        self.level = level
        self._member: zlib._Compress | None = None

    def _compress(self, data: bytes) -> bytes:
        if len(data) >= BINARY_WRITE and _looks_binary(data):
            alone = zlib.compressobj(self.level, zlib.DEFLATED, GZIP_WBITS, strategy=zlib.Z_HUFFMAN_ONLY)
            return self._finish() + alone.compress(data) + alone.flush(zlib.Z_FINISH)
        if self._member is None:
            self._member = zlib.compressobj(self.level, zlib.DEFLATED, GZIP_WBITS)
        return self._member.compress(data)

    def _finish(self) -> bytes:
        member, self._member = self._member, None
        return member.flush(zlib.Z_FINISH) if member is not None else b""


BINARY_WRITE = 1024 * 1024  # writes this long are sampled (a line of documents with big attachments)
_SAMPLE = 64 * 1024


def _looks_binary(data: bytes) -> bool:
    """Whether deflate shrinks a sample from the middle of `data` by less than a quarter (base64 of random bytes
    stays at ~77%; JSON documents go below 50%). ~2 ms per sample."""
    middle = max(0, len(data) // 2 - _SAMPLE // 2)
    sample = data[middle:middle + _SAMPLE]
    return len(zlib.compress(sample, 1)) > 0.75 * len(sample)


class ZstdCompressor(Compressor):
    """One zstd frame per segment, with its content checksum (XXH64): a damaged frame fails to decode."""

    codec = "zstd"

    def __init__(self, level: int = LEVELS["zstd"]) -> None:
        super().__init__()
        if not 1 <= level <= 19:
            raise ValueError(f"zstd level {level} is outside 1-19 (higher levels need more than {ZSTD_MAX_WINDOW} "
                             "bytes of window to read back)")
        self.level = level
        import zstandard

        self._context = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._frame: zstandard.ZstdCompressionObj | None = None

    def _compress(self, data: bytes) -> bytes:
        if self._frame is None:
            self._frame = self._context.compressobj()
        return self._frame.compress(data)

    def _finish(self) -> bytes:
        frame, self._frame = self._frame, None
        return frame.flush(_zstandard().COMPRESSOBJ_FLUSH_FINISH) if frame is not None else b""


def _zstandard() -> Any:
    import zstandard

    return zstandard


def compressor(codec: str, level: int | None = None) -> Compressor:
    """The stage for COMPRESSION=`codec` (one of CODECS), at `level` or the codec's default."""
    if codec == "gzip":
        return GzipCompressor(LEVELS["gzip"] if level is None else level)
    if codec == "zstd":
        return ZstdCompressor(LEVELS["zstd"] if level is None else level)
    if codec == "none":
        return Compressor()
    raise ValueError(f"unknown compression {codec!r}: one of {', '.join(CODECS)}")


def sniff(head: bytes) -> str:
    """The codec a stream's first bytes say (an object without a manifest: couchbackup's file, `| gzip`, `| zstd`)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC) or int.from_bytes(head[:4], "little") in _SKIPPABLE:
        return "zstd"
    return "none"


def decompressed(chunks: Iterable[bytes], codec: str | None, step: int = STEP) -> Iterator[bytes]:
    """The plain bytes of a stream compressed with `codec` (what the manifest says; objects of earlier versions:
    "none"), at most `step` bytes per piece. None: the codec its first bytes say. "none" passes the very chunks on.
    A stream that ends inside a member or frame is truncated (FormatError), as is one that is not the codec."""
    head, stream = _peek(chunks, len(ZSTD_MAGIC))
    codec = sniff(head) if codec is None else codec
    if codec == "none":
        yield from stream
        return
    if codec not in CODECS:
        raise FormatError(f"the backup says it is compressed with {codec!r}, which this version cannot read "
                          f"(it reads {', '.join(CODECS)})")
    if sniff(head) != codec:
        raise FormatError(f"the backup should be {codec}-compressed but does not start like a {codec} stream "
                          "(a wrong manifest, or another object at its key?)")
    yield from gunzip_if_compressed(stream, step) if codec == "gzip" else _unzstd(stream, step)


def _peek(chunks: Iterable[bytes], count: int) -> tuple[bytes, Iterator[bytes]]:
    """The stream's first `count` bytes (fewer if it is shorter), and the whole stream, those bytes included."""
    source = iter(chunks)
    head: list[bytes] = []
    for chunk in source:  # chunks may be shorter than `count`
        head.append(chunk)
        if sum(map(len, head)) >= count:
            break
    return b"".join(head)[:count], itertools.chain(head, source)


def _unzstd(chunks: Iterator[bytes], step: int) -> Iterator[bytes]:
    """Every zstd frame of the stream, `step` bytes of output at a time (zstandard's stream reader bounds each
    read; its decompressobj would not). The reader ends quietly when its input stops inside a frame, so the
    frames' structure is followed alongside (_Frames) to tell a truncated stream from a whole one."""
    frames = _Frames()
    source = _Source(chunks, frames)
    zstandard = _zstandard()
    reader = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
        cast(IO[bytes], source), read_size=ZSTD_READ, read_across_frames=True, closefd=False)
    while True:
        try:
            out = reader.read(step)
        except zstandard.ZstdError as exc:
            if "too much memory" in str(exc):
                raise FormatError(f"the zstd-compressed backup needs a window over {ZSTD_MAX_WINDOW >> 20} MiB to read "
                                  "(compressed with zstd --long or --ultra?): more memory than a restore may take; "
                                  "recompress it without those options") from None
            raise FormatError(f"the zstd-compressed backup is corrupt within its first {source.read_bytes} "
                              f"compressed bytes: {exc}") from None
        if not out:
            break
        yield out
    frames.end()


class _Source:
    """The chunks as a file the zstd reader pulls from; every byte passes the frame check on its way."""

    def __init__(self, chunks: Iterator[bytes], frames: _Frames) -> None:
        self._chunks, self._frames = chunks, frames
        self._left = memoryview(b"")
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._left = memoryview(chunk)
        count = len(self._left) if size < 0 else size
        out, self._left = bytes(self._left[:count]), self._left[count:]
        self._frames.feed(out)
        self.read_bytes += len(out)
        return out


# Frame and block layout (RFC 8878, section 3.1): what _Frames needs to find each frame's end without decoding it.
_SKIPPABLE = range(0x184D2A50, 0x184D2A60)  # magic numbers of skippable frames
_FCS_SIZES = (0, 2, 4, 8)  # Frame_Content_Size bytes per FCS flag (flag 0 with Single_Segment: 1 byte)
_DID_SIZES = (0, 1, 2, 4)  # Dictionary_ID bytes per flag
_RLE_BLOCK, _RESERVED_BLOCK = 1, 3


class _Frames:
    """Follows a zstd stream's frame structure (magic, header, block headers, checksum), skipping block contents:
    a few Python steps per 128 KiB block. Knows the byte where each frame ends, so `end()` can tell whether the
    stream stopped between frames."""

    def __init__(self) -> None:
        self._state, self._need, self._skip = "magic", 4, 0  # collect `_need` bytes of a field after skipping `_skip`
        self._field = bytearray()
        self._checksum = False
        self.offset = 0  # bytes seen

    def feed(self, data: bytes) -> None:
        view, at = memoryview(data), 0
        while at < len(view):
            if self._skip:
                taken = min(self._skip, len(view) - at)
                self._skip -= taken
            else:
                taken = min(self._need - len(self._field), len(view) - at)
                self._field += view[at:at + taken]
                if len(self._field) == self._need:
                    field = bytes(self._field)
                    self._field.clear()
                    self._step(field, self.offset + at + taken)
            at += taken
        self.offset += len(view)

    def end(self) -> None:
        if self._state != "magic" or self._field or self._skip:
            raise FormatError(f"the zstd-compressed backup is truncated: its stream ends inside a zstd frame, after "
                              f"{self.offset} compressed bytes (an incomplete upload or download?)")

    def _step(self, field: bytes, at: int) -> None:
        """The field the state asked for is complete (ending at byte `at`): what comes next."""
        value = int.from_bytes(field, "little")
        if self._state == "magic":
            if field == ZSTD_MAGIC:
                self._expect("descriptor", 1)
            elif value in _SKIPPABLE:
                self._expect("skippable", 4)
            else:
                raise FormatError(f"the zstd-compressed backup is corrupt: no zstd frame starts at compressed byte "
                                  f"{at - 4}")
        elif self._state == "skippable":
            self._expect("magic", 4, skip=value)
        elif self._state == "descriptor":
            single_segment = bool(value & 0x20)
            fcs = _FCS_SIZES[value >> 6] or int(single_segment)
            header = (0 if single_segment else 1) + _DID_SIZES[value & 3] + fcs
            self._checksum = bool(value & 0x04)
            self._expect("block", 3, skip=header)
        else:  # a block header: last-block bit, type, size
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == _RESERVED_BLOCK:
                raise FormatError(f"the zstd-compressed backup is corrupt: a reserved block type at compressed byte "
                                  f"{at - 3}")
            content = 1 if kind == _RLE_BLOCK else size
            if last:
                self._expect("magic", 4, skip=content + (4 if self._checksum else 0))
            else:
                self._expect("block", 3, skip=content)

    def _expect(self, state: str, need: int, skip: int = 0) -> None:
        self._state, self._need, self._skip = state, need, skip
