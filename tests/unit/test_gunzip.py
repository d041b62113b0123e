"""The gunzip stage of restore: gzip-compressed backups (`couchbackup | gzip`) inflate on the way, others pass as is."""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import Iterator

import pytest

from backup.errors import FormatError
from backup.gunzip import gunzip_if_compressed

BODY = b'{"name":"@cloudant/couchbackup","version":"2.11.12","mode":"full"}\n' + b"".join(
    b'[{"_id":"doc-%06d","_rev":"1-abc","n":%d}]\n' % (i, i) for i in range(2000))


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _inflated(data: bytes, size: int, step: int = 1024 * 1024) -> bytes:
    return b"".join(gunzip_if_compressed(iter(_chunks(data, size)), step))


@pytest.mark.parametrize("data", [b"", b"\x1f", b"\x1f\x8a rest", b"[]\n", BODY], ids=repr)
def test_a_stream_that_is_not_gzip_passes_through_untouched(data: bytes) -> None:
    chunks = _chunks(data, 7)
    out = list(gunzip_if_compressed(iter(chunks)))
    assert b"".join(out) == data
    assert out == chunks  # the very chunks: nothing copied or re-split


def test_a_stream_of_single_bytes_is_recognised_as_gzip_and_passes_through_otherwise() -> None:
    assert _inflated(gzip.compress(BODY), 1) == BODY
    assert _inflated(BODY, 1) == BODY


@pytest.mark.parametrize("size", [1, 2, 3, 10, 4096, 1 << 20])
def test_a_gzip_stream_inflates_whatever_its_chunks(size: int) -> None:
    assert _inflated(gzip.compress(BODY), size) == BODY


@pytest.mark.parametrize("step", [1, 7, 4096])
def test_pieces_never_exceed_their_step_and_lose_nothing(step: int) -> None:
    data = gzip.compress(BODY + bytes(100_000))
    pieces = list(gunzip_if_compressed(iter(_chunks(data, 50)), step))
    assert b"".join(pieces) == BODY + bytes(100_000) and max(map(len, pieces)) <= step


def test_concatenated_gzip_members_inflate_as_one_stream_as_gzip_does() -> None:
    """`gzip -c a >> f; gzip -c b >> f` (or a compressor restarted per part) gives several members."""
    parts = [BODY[:1000], BODY[1000:50_000], b"", BODY[50_000:]]
    data = b"".join(gzip.compress(p) for p in parts)
    assert gzip.decompress(data) == BODY
    for size in (1, 5, 333, len(data)):
        assert _inflated(data, size) == BODY


def test_zero_padding_after_the_last_member_is_ignored_as_gzip_does() -> None:
    data = gzip.compress(BODY) + b"\0" * 100
    assert gzip.decompress(data) == BODY
    assert _inflated(data, 64) == BODY


def test_a_truncated_gzip_stream_is_refused_and_says_so() -> None:
    data = gzip.compress(BODY)
    for cut in (3, 10, len(data) // 2, len(data) - 8, len(data) - 1):
        with pytest.raises(FormatError, match="truncated"):
            _inflated(data[:cut], 100)
    with pytest.raises(FormatError, match="truncated"):  # the second member cut
        _inflated(data + gzip.compress(b"more")[:15], 100)


def test_a_corrupted_gzip_stream_is_refused() -> None:
    data = bytearray(gzip.compress(BODY))
    data[-6] ^= 0xFF  # the CRC32 of the member
    with pytest.raises(FormatError, match="gzip"):
        _inflated(bytes(data), 100)
    with pytest.raises(FormatError, match="gzip"):  # garbage after a member
        _inflated(gzip.compress(BODY) + b"not gzip", 100)


def _bomb(mib: int) -> bytes:
    """`mib` MiB of zeros as one gzip member (~1 KiB per MiB)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1024 * 1024)
    return b"".join([deflate.compress(block) for _ in range(mib)]) + deflate.flush()


def test_a_decompression_bomb_is_inflated_in_bounded_pieces_and_only_as_it_is_read() -> None:
    data = _bomb(64)
    assert len(data) < 100_000
    pulled = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled
        for chunk in _chunks(data, 1024):
            pulled += 1
            yield chunk

    step = 256 * 1024
    pieces = gunzip_if_compressed(source(), step)
    first = next(pieces)
    assert 0 < len(first) <= step and pulled == 1  # one input chunk held, not the whole inflated stream
    total = len(first)
    for piece in pieces:
        assert 0 < len(piece) <= step
        total += len(piece)
    assert total == 64 * 1024 * 1024


def test_a_whole_part_of_compressed_bytes_is_inflated_without_being_held_twice() -> None:
    """A restore hands over a verified part at a time (5 MiB or more). zlib copies the input it has not used yet
    after each piece of output, so the stage feeds it a slice at a time: memory stays about a piece, not a part."""
    import random
    import tracemalloc

    rng = random.Random(7)
    plain = base64.b64encode(rng.randbytes(6 * 1024 * 1024))  # hardly compresses: ~6 MiB of compressed input
    part = gzip.compress(plain, 1)
    tracemalloc.start()
    try:
        total = sum(len(piece) for piece in gunzip_if_compressed([part], step=1024 * 1024))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == len(plain)
    assert peak < 2 * 1024 * 1024, f"{peak} bytes held while inflating a part of {len(part)} bytes"
