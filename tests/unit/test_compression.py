"""The compression stages: segments (gzip members, zstd frames) that decode as one stream, also with the gzip and
zstd tools; reading bounded per piece, and refusing truncated, damaged or mislabelled streams."""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import subprocess
import zlib
from collections.abc import Iterator

import pytest
import zstandard

from backup.compression import CODECS, ZSTD_MAGIC, Compressor, compressor, decompressed, sniff
from backup.errors import FormatError

LINES = [b'{"name":"cloudant-cos-backup","version":"1","mode":"shallow"}\n'] + [
    b'[{"_id":"doc-%06d","_rev":"1-%032x","n":%d,"note":"alpha bravo charlie %d"}]\n' % (i, i * 7919, i, i % 97)
    for i in range(3000)]
PLAIN = b"".join(LINES)
COMPRESSED = ("gzip", "zstd")


def _write(stage: Compressor, lines: list[bytes], ends: set[int]) -> bytes:
    """The stage's output for the lines, a segment ending after each line index in `ends` and at the end."""
    out = []
    for index, line in enumerate(lines):
        out.append(stage.write(line))
        if index in ends:
            out.append(stage.end_segment())
    out.append(stage.end_segment())
    return b"".join(out)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i:i + size] for i in range(0, len(data), size))


def _read(data: bytes, codec: str | None, size: int = 65536, step: int = 1 << 20) -> bytes:
    return b"".join(decompressed(_chunks(data, size), codec, step))


SEGMENTED = {codec: _write(compressor(codec), LINES, {0, 999, 2000}) for codec in CODECS}


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("size", [1, 3, 4096, 1 << 20])
def test_several_segments_read_back_as_one_stream_whatever_the_chunks(codec: str, size: int) -> None:
    assert _read(SEGMENTED[codec], codec, size, step=5000) == PLAIN


@pytest.mark.parametrize("codec", CODECS)
def test_where_the_segments_end_changes_the_bytes_stored_but_never_what_they_read_as(codec: str) -> None:
    """A checkpointed backup ends a segment at each checkpoint: wherever they fall, the object reads the same."""
    one_shot = _write(compressor(codec), LINES, set())
    for ends in ({5}, {1, 2, 3}, set(range(0, 3000, 100))):
        assert _read(_write(compressor(codec), LINES, ends), codec) == PLAIN == _read(one_shot, codec)


@pytest.mark.parametrize("codec", CODECS)
def test_the_same_lines_and_segments_compress_to_the_same_bytes(codec: str) -> None:
    """No time or name in a gzip header, nothing random: a backup written again is the same object."""
    assert _write(compressor(codec), LINES, {0, 999, 2000}) == SEGMENTED[codec]


def test_none_is_the_bytes_as_they_came_and_reads_the_very_chunks() -> None:
    assert SEGMENTED["none"] == PLAIN
    chunks = list(_chunks(PLAIN, 777))
    assert list(decompressed(iter(chunks), "none")) == chunks
    assert list(decompressed(iter(chunks), None)) == chunks  # an object of earlier versions, told by its bytes


def test_compressed_objects_are_much_smaller() -> None:
    assert len(SEGMENTED["gzip"]) < len(PLAIN) / 4 and len(SEGMENTED["zstd"]) < len(PLAIN) / 4


def test_several_gzip_members_decompress_with_python_gzip_and_the_gzip_tool() -> None:
    data = SEGMENTED["gzip"]
    assert _members(data) == 4  # one member per segment
    assert gzip.decompress(data) == PLAIN
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary")
    assert subprocess.run(["gzip", "-dc"], input=data, capture_output=True, check=True).stdout == PLAIN


def test_several_zstd_frames_decompress_with_the_zstd_tool() -> None:
    if shutil.which("zstd") is None:
        pytest.skip("no zstd binary")
    data = SEGMENTED["zstd"]
    assert data.count(ZSTD_MAGIC) >= 4
    assert subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout == PLAIN


@pytest.mark.parametrize("args", [[], ["-19"], ["--no-check"], ["-1", "--content-size"]])
def test_zstd_files_of_the_zstd_tool_read_back(args: list[str]) -> None:
    """`couchbackup | zstd`: frames with a content size, raw blocks (random bytes), RLE blocks (zeros)."""
    if shutil.which("zstd") is None:
        pytest.skip("no zstd binary")
    data = PLAIN + os.urandom(300_000) + bytes(500_000) + PLAIN
    packed = subprocess.run(["zstd", "-cq", *args], input=data, capture_output=True, check=True).stdout
    assert _read(packed, "zstd", size=1000) == data and _read(packed, None) == data


def test_skippable_zstd_frames_are_skipped() -> None:
    skippable = (0x184D2A5A).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    data = skippable + SEGMENTED["zstd"] + skippable
    assert b"".join(decompressed(_chunks(data, 3), "zstd")) == PLAIN


@pytest.mark.parametrize("codec", COMPRESSED)
def test_a_bomb_inflates_a_bounded_piece_at_a_time(codec: str) -> None:
    """32 MiB of zeros compress to a few KB: reading never holds more than `step` bytes of it at once."""
    stage = compressor(codec, 9)
    bomb = stage.write(bytes(32 << 20)) + stage.end_segment()
    assert len(bomb) < 64 * 1024
    total = 0
    for piece in decompressed(iter([bomb]), codec, step=65536):
        assert 0 < len(piece) <= 65536
        total += len(piece)
    assert total == 32 << 20


@pytest.mark.parametrize("codec", COMPRESSED)
@pytest.mark.parametrize("cut", [1, 4, 9, 100, 1000])
def test_a_stream_cut_inside_a_segment_is_truncated(codec: str, cut: int) -> None:
    with pytest.raises(FormatError, match="truncated"):
        _read(SEGMENTED[codec][:-cut], codec, size=333)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_a_stream_cut_between_segments_reads_as_a_shorter_one(codec: str) -> None:
    """What the codec cannot tell: the manifest's sizes (verified before reading) catch such an object."""
    first = _write(compressor(codec), LINES[:10], set())
    assert _read(first + _write(compressor(codec), LINES[10:], set()), codec) == PLAIN
    assert _read(first, codec) == b"".join(LINES[:10])


@pytest.mark.parametrize("codec", COMPRESSED)
def test_a_damaged_byte_is_a_format_error(codec: str) -> None:
    damaged = bytearray(SEGMENTED[codec])
    damaged[len(damaged) // 2] ^= 0x55
    with pytest.raises(FormatError):
        _read(bytes(damaged), codec)


def test_bytes_after_the_last_zstd_frame_are_a_format_error() -> None:
    with pytest.raises(FormatError, match="no zstd frame starts at compressed byte"):
        _read(SEGMENTED["zstd"] + b"garbage!", "zstd")


@pytest.mark.parametrize(("codec", "other"), [("gzip", "zstd"), ("zstd", "gzip"), ("gzip", "none"), ("zstd", "none")])
def test_an_object_not_of_the_codec_its_manifest_says_is_refused(codec: str, other: str) -> None:
    with pytest.raises(FormatError, match=f"should be {codec}-compressed"):
        _read(SEGMENTED[other], codec)


def test_an_unknown_codec_in_a_manifest_is_refused_and_unknown_settings_are_value_errors() -> None:
    with pytest.raises(FormatError, match="'lz4'"):
        _read(SEGMENTED["gzip"], "lz4")
    with pytest.raises(ValueError, match="lz4"):
        compressor("lz4")
    with pytest.raises(ValueError, match="outside 1-19"):
        compressor("zstd", 22)


def test_a_zstd_window_bigger_than_a_restore_may_hold_is_refused() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27, enable_ldm=True)
    frame = zstandard.ZstdCompressor(compression_params=params).compressobj()  # size unknown: the window stays
    data = frame.compress(PLAIN) + frame.flush()
    with pytest.raises(FormatError, match="window over 8 MiB"):
        _read(data, "zstd")


def test_the_codec_of_an_object_without_a_manifest_is_told_by_its_first_bytes() -> None:
    assert [sniff(SEGMENTED[codec]) for codec in CODECS] == list(CODECS)
    assert sniff(b"") == sniff(b"\x1f") == "none"
    for codec in CODECS:
        assert _read(SEGMENTED[codec], None, size=1) == PLAIN


def test_a_segment_opens_only_for_data_and_counts_are_kept() -> None:
    for codec in CODECS:
        stage = compressor(codec)
        assert stage.end_segment() == b"" and stage.write(b"") == b"" and stage.end_segment() == b""
        out = stage.write(PLAIN) + stage.end_segment()
        assert (stage.codec, stage.bytes_in, stage.bytes_out) == (codec, len(PLAIN), len(out))


def test_a_long_write_that_deflate_cannot_shrink_is_a_huffman_coded_member_of_its_own() -> None:
    """A line of attachments (base64 of random bytes): ~3x faster so, and no bigger; JSON lines are deflated."""
    binary = b'[{"_id":"a","_attachments":{"b":{"data":"' + base64.b64encode(os.urandom(1 << 20)) + b'"}}}]\n'
    json_line = b"".join(LINES) * 2
    stage = compressor("gzip")
    out = [stage.write(LINES[0]), stage.write(binary), stage.write(json_line), stage.end_segment()]
    data = b"".join(out)
    assert gzip.decompress(data) == LINES[0] + binary + json_line
    assert len(out[1]) < 0.77 * len(binary)  # the first member, ended, and the binary line's own
    assert _members(data) == 3 and len(out[2]) + len(out[3]) < 0.25 * len(json_line)


def _members(data: bytes) -> int:
    count = 0
    while data:
        member = zlib.decompressobj(wbits=31)
        member.decompress(data)
        data, count = member.unused_data, count + 1
    return count


def test_gzip_levels_are_zlibs() -> None:
    fast, best = compressor("gzip", 1), compressor("gzip", 9)
    small = best.write(PLAIN) + best.end_segment()
    assert len(small) < len(fast.write(PLAIN) + fast.end_segment())
    assert zlib.decompress(small, wbits=31) == PLAIN
