"""The stream stages as a backup of several invocations uses them: each invocation's Stages begins a segment, the
object is their concatenation, and reading from any segment's start (decryption, then decompression) gives the
plain text from there. Pure: no servers."""

from __future__ import annotations

import gzip
import io

import pytest
import zstandard
from pyrage import x25519

from backup.compression import CODECS
from backup.encryption import Identities, WrongIdentity
from backup.errors import ConfigError, FormatError
from backup.stages import Segment, Stages, content_type, plain_bytes, require, segment_at, segments_of


def lines(count: int, start: int = 0) -> list[bytes]:
    return [b'[{"_id":"doc-%06d","_rev":"1-%032x","n":%d}]\n' % (i, i, i) for i in range(start, start + count)]


def invocations(codec: str, recipients: list[str], batches: list[list[bytes]]) -> tuple[bytes, list[Segment]]:
    """The object a backup writes in len(batches) invocations, and its segments (as backup.py records them)."""
    stored, plain, segments = b"", 0, []
    for batch in batches:
        stages = Stages(codec, None, recipients, offset=len(stored))
        for line in batch:
            if not stages.open:
                segments.append(Segment(len(stored), plain))
            stored += stages.write(line)
            plain += len(line)
        stored += stages.end_segment()
    return stored, segments


@pytest.fixture(scope="module")
def key() -> x25519.Identity:
    return x25519.Identity.generate()


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "age"])
def test_an_object_of_several_invocations_reads_back_from_every_segment(codec: str, encrypted: bool,
                                                                        key: x25519.Identity) -> None:
    batches = [lines(300), lines(1, 300), lines(700, 301)]
    recipients = [str(key.to_public())] if encrypted else []
    stored, segments = invocations(codec, recipients, batches)
    text = b"".join(b"".join(batch) for batch in batches)
    identities = Identities.parse(str(key)) if encrypted else None
    for first, segment in enumerate(segments):
        got = b"".join(plain_bytes([stored[segment.stored:]], codec, segments, first,
                                   recipients or None, identities, "cos://b/k"))
        assert got == text[segment.plain:], f"from segment {first}"


def test_the_standard_tools_read_a_several_invocation_object_as_one_stream() -> None:
    batches = [lines(200), lines(200, 200)]
    text = b"".join(b"".join(batch) for batch in batches)
    assert gzip.decompress(invocations("gzip", [], batches)[0]) == text
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(invocations("zstd", [], batches)[0]),
                                                    read_across_frames=True) as reader:
        assert reader.read() == text
    assert invocations("none", [], batches)[0] == text


def test_an_invocation_that_writes_nothing_begins_no_segment() -> None:
    stages = Stages("gzip", None, [], offset=10)
    assert not stages.open and stages.end_segment() == b""
    stages.write(b"")
    assert not stages.open


def test_a_damaged_encrypted_segment_fails_before_its_plain_text_is_used(key: x25519.Identity) -> None:
    stored, segments = invocations("gzip", [str(key.to_public())], [lines(50), lines(50, 50)])
    damaged = bytearray(stored)
    damaged[segments[1].stored + 200] ^= 1  # inside the second age stream's header or first chunk
    with pytest.raises(FormatError):
        b"".join(plain_bytes([bytes(damaged)], "gzip", segments, 0, [str(key.to_public())],
                             Identities.parse(str(key)), "cos://b/k"))


def test_reading_an_encrypted_backup_needs_an_identity_that_matches_one_of_its_recipients(key: x25519.Identity) -> None:
    recipients = [str(key.to_public())]
    with pytest.raises(ConfigError, match="AGE_IDENTITY"):
        require(None, recipients, "restoring cos://b/k: the backup")
    with pytest.raises(WrongIdentity):
        require(Identities.parse(str(x25519.Identity.generate())), recipients, "restoring cos://b/k: the backup")
    assert require(Identities.parse(str(key)), recipients, "x").recipients == frozenset(recipients)


@pytest.mark.parametrize(("plain", "index"), [(0, 0), (99, 0), (100, 1), (101, 1), (250, 2), (10**9, 2)])
def test_a_plain_offset_is_read_from_the_segment_that_holds_it(plain: int, index: int) -> None:
    assert segment_at([Segment(0, 0), Segment(40, 100), Segment(90, 250)], plain) == index


def test_records_without_segments_are_one_segment_from_the_start() -> None:
    assert segments_of(None) == segments_of([]) == [Segment(0, 0)]
    assert segments_of([{"stored": 0, "plain": 0}, {"stored": 7, "plain": 30}]) == [Segment(0, 0), Segment(7, 30)]


def test_no_codec_is_sent_with_a_content_encoding_only_a_type() -> None:
    assert content_type("gzip", False) == "application/gzip"
    assert content_type("zstd", False) == "application/zstd"
    assert content_type("none", False).startswith("text/plain")
    assert content_type("gzip", True) == "application/octet-stream"


def test_a_segment_is_full_after_segment_bytes_of_plain_text_and_ending_it_starts_the_count_again(monkeypatch) -> None:
    import backup.stages as module

    monkeypatch.setattr(module, "SEGMENT_BYTES", 100)
    stages = Stages("gzip", None, [], offset=0)
    stages.write(b"x" * 60)
    assert stages.open and not stages.segment_full
    stages.write(b"x" * 40)
    assert stages.segment_full
    stages.end_segment()
    assert not stages.open and not stages.segment_full and stages.segment_plain == 0
