"""The age stages: one stream per segment, each an ordinary age file; several read back with their offsets; wrong
keys, damaged and truncated streams refused with clear errors; no message or repr ever shows a private key."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest
from pyrage import x25519

from backup.compression import compressor, decompressed
from backup.encryption import AgeEncryptor, Identities, WrongIdentity, decrypted, parse_recipients
from backup.errors import ConfigError, FormatError

KEY = x25519.Identity.generate()
SECRET = str(KEY)
PUBLIC = str(KEY.to_public())
OTHER = x25519.Identity.generate()
IDENTITIES = Identities([KEY])
# Lines written by three invocations (segments); the middle one spans several 64 KiB age chunks.
SEGMENTS = [[b"metadata line\n", b"[1]\n"], [os.urandom(1000) + b"\n" for _ in range(300)], [b"[3]\n"]]
PLAIN = [b"".join(lines) for lines in SEGMENTS]


def _encrypt(segments: list[list[bytes]], recipients: tuple[str, ...] = (PUBLIC,)) -> tuple[bytes, list[int]]:
    """The object and its streams' offsets as a checkpointed backup writes them: one encryptor per invocation,
    each given the bytes stored before it."""
    out, starts = b"", []
    for lines in segments:
        with AgeEncryptor(recipients, offset=len(out)) as stage:
            out += b"".join(stage.write(line) for line in lines) + stage.end_segment()
        starts += stage.starts
    return out, starts


OBJECT, STARTS = _encrypt(SEGMENTS)


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i:i + size] for i in range(0, len(data), size))


def _read(data: bytes, starts: list[int] = STARTS, identities: Identities = IDENTITIES, size: int = 65536,
          **options: Any) -> bytes:
    return b"".join(decrypted(_chunks(data, size), identities, starts, **options))


def _age_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("age-")]


def test_each_segment_is_one_age_stream_at_the_offsets_reported() -> None:
    assert STARTS[0] == 0 and len(STARTS) == 3
    for index, start in enumerate(STARTS):
        end = STARTS[index + 1] if index + 1 < len(STARTS) else len(OBJECT)
        assert OBJECT[start:].startswith(b"age-encryption.org/v1\n")
        assert pyrage.decrypt(OBJECT[start:end], [KEY]) == PLAIN[index]


def test_a_one_stream_object_decrypts_with_the_age_tool(tmp_path: Path) -> None:
    if shutil.which("age") is None:
        pytest.skip("no age binary")
    (tmp_path / "key.txt").write_text(f"# created: by the test\n# public key: {PUBLIC}\n{SECRET}\n")
    one = OBJECT[:STARTS[1]]
    done = subprocess.run(["age", "-d", "-i", str(tmp_path / "key.txt")], input=one, capture_output=True, check=True)
    assert done.stdout == PLAIN[0]
    # ...while `age -d` of several streams fails: why the manifest records the offsets
    assert subprocess.run(["age", "-d", "-i", str(tmp_path / "key.txt")], input=OBJECT, capture_output=True).returncode


@pytest.mark.parametrize("size", [1, 100, 65536, 1 << 22])
def test_several_streams_decrypt_with_their_offsets_whatever_the_chunks(size: int) -> None:
    assert _read(OBJECT, size=size) == b"".join(PLAIN)


def test_reading_can_start_at_a_later_stream() -> None:
    assert _read(OBJECT[STARTS[1]:], offset=STARTS[1]) == PLAIN[1] + PLAIN[2]
    with pytest.raises(ValueError, match="not where one of the backup's age streams starts"):
        _read(OBJECT[5:], offset=5)


def test_pieces_stay_bounded() -> None:
    pieces = list(decrypted(_chunks(OBJECT, 1 << 20), IDENTITIES, STARTS, step=32768))
    assert b"".join(pieces) == b"".join(PLAIN)
    assert max(map(len, pieces)) <= 32768 + 65536  # a piece, plus the age chunk it completed


def test_compressed_then_encrypted_segments_read_back_and_the_tools_read_a_single_one(tmp_path: Path) -> None:
    out, starts = b"", []
    for lines in SEGMENTS:
        codec, seal = compressor("gzip"), AgeEncryptor((PUBLIC,), offset=len(out))
        out += b"".join(seal.write(codec.write(line)) for line in lines) + seal.write(codec.end_segment()) \
            + seal.end_segment()
        starts += seal.starts
    plain = decompressed(decrypted(_chunks(out, 4096), IDENTITIES, starts), "gzip")
    assert b"".join(plain) == b"".join(PLAIN)
    if shutil.which("age") is None or shutil.which("gzip") is None:
        return
    (tmp_path / "key.txt").write_text(SECRET + "\n")
    first = subprocess.run(["age", "-d", "-i", str(tmp_path / "key.txt")], input=out[:starts[1]], capture_output=True,
                           check=True).stdout
    assert subprocess.run(["gzip", "-dc"], input=first, capture_output=True, check=True).stdout == PLAIN[0]


def test_every_recipient_can_read_it() -> None:
    data, starts = _encrypt(SEGMENTS, (PUBLIC, str(OTHER.to_public())))
    assert _read(data, starts, Identities([OTHER])) == _read(data, starts) == b"".join(PLAIN)


def test_a_wrong_identity_is_told_before_any_plaintext() -> None:
    pieces = decrypted(iter([OBJECT]), Identities([OTHER]), STARTS)
    with pytest.raises(WrongIdentity, match="^AGE_IDENTITY does not match any recipient of this backup$"):
        next(pieces)
    with pytest.raises(WrongIdentity, match=f"it is encrypted to {PUBLIC}"):
        _read(OBJECT, identities=Identities([OTHER]), size=1, recipients=[PUBLIC])
    assert issubclass(WrongIdentity, ConfigError)


def test_the_manifests_recipients_tell_a_wrong_identity_without_reading() -> None:
    IDENTITIES.check([str(OTHER.to_public()), PUBLIC])
    with pytest.raises(WrongIdentity, match="does not match any recipient"):
        Identities([OTHER]).check([PUBLIC])


def test_a_damaged_header_is_not_taken_for_a_wrong_identity_when_the_manifest_lists_the_key() -> None:
    damaged = bytearray(OBJECT)
    share = OBJECT.index(b"-> X25519 ") + 15  # inside the stanza's ephemeral share: another valid base64 letter
    damaged[share] = ord("B") if damaged[share] != ord("B") else ord("C")
    with pytest.raises(FormatError, match="header of its age stream 1 of 3 .* manifest lists one of them"):
        _read(bytes(damaged), recipients=[PUBLIC])


@pytest.mark.parametrize("where", ["header_mac", "first_chunk", "second_stream", "last_byte"])
def test_a_damaged_byte_is_a_format_error(where: str) -> None:
    offset = {"header_mac": OBJECT.index(b"\n---") + 8, "first_chunk": STARTS[1] + 5000,
              "second_stream": STARTS[1] + 200_000, "last_byte": len(OBJECT) - 1}[where]
    damaged = bytearray(OBJECT)
    damaged[offset] ^= 0x01
    with pytest.raises(FormatError, match="damaged or truncated in its age stream"):
        _read(bytes(damaged))


def test_plaintext_before_a_damaged_chunk_is_handed_on_only_once_authenticated() -> None:
    damaged = bytearray(OBJECT)
    damaged[STARTS[1] + 200_000] ^= 0x01  # in a later chunk of stream 2
    got = []
    with pytest.raises(FormatError):
        for piece in decrypted(_chunks(bytes(damaged), 4096), IDENTITIES, STARTS):
            got.append(piece)
    plain = b"".join(got)
    assert plain == b"".join(PLAIN)[:len(plain)] and len(plain) < len(PLAIN[0]) + 200_000


@pytest.mark.parametrize("cut", [1, 17, 300, "stream", "header"])
def test_a_truncated_object_is_a_format_error(cut: int | str) -> None:
    end = {"stream": STARTS[2], "header": STARTS[2] + 30}[cut] if isinstance(cut, str) else len(OBJECT) - cut
    with pytest.raises(FormatError, match="truncated"):
        _read(OBJECT[:end])


def test_offsets_that_are_not_the_streams_are_a_format_error() -> None:
    with pytest.raises(FormatError):
        _read(OBJECT, [0, STARTS[1] + 10, STARTS[2]])
    with pytest.raises(FormatError):
        _read(OBJECT, [0])  # three streams read as one: bytes after the first one's end


def test_threads_end_when_a_stream_is_dropped_or_the_reader_stops() -> None:
    stage = AgeEncryptor((PUBLIC,))
    stage.write(b"x" * 100_000)
    reading = decrypted(_chunks(OBJECT, 1000), IDENTITIES, STARTS)
    next(reading)
    assert _age_threads()
    stage.close()
    reading.close()
    for thread in _age_threads():
        thread.join(timeout=10)
    assert not _age_threads()


def test_counts_and_empty_writes() -> None:
    with AgeEncryptor((PUBLIC,), offset=1000) as stage:
        assert stage.write(b"") == b"" and stage.end_segment() == b"" and stage.starts == []
        out = stage.write(b"abc") + stage.end_segment()
    assert (stage.bytes_in, stage.bytes_out, stage.starts) == (3, len(out), [1000])


# -- keys


def test_recipients_are_checked_canonical_and_without_repeats() -> None:
    other = str(OTHER.to_public())
    assert parse_recipients(f" {PUBLIC.upper()} ,{other},, {PUBLIC}") == (PUBLIC, other)


def _stable_id(value: object) -> str | None:
    """The keys are made when the module loads, so every pytest-xdist worker makes others: a test's id must not
    show them (the workers must collect the same tests)."""
    if isinstance(value, str) and (PUBLIC in value or SECRET[:-3] in value):
        return "generated-key"
    return None


@pytest.mark.parametrize(("value", "message"), [
    ("", "holds no age public key"),
    (" , ", "holds no age public key"),
    (f"{PUBLIC},age1qqqqqqqq", r"item 2 \(age1qqqqqqqq\.\.\.\) is not a valid age public key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "item 1 is not an age public key"),
    ("hunter2", "item 1 is not an age public key"),
    (f"{PUBLIC},{SECRET}", "item 2 is a private key"),
], ids=_stable_id)
def test_bad_recipients_are_named_by_position_and_never_echo_a_secret(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_recipients(value)
    assert SECRET not in str(raised.value) and "hunter2" not in str(raised.value)


def test_an_identity_file_with_comments_is_read() -> None:
    text = f"# created: 2026-12-07\n# public key: {PUBLIC}\n\n{SECRET}\n  {str(OTHER)}  \n"
    identities = Identities.parse(text)
    assert identities.recipients == {PUBLIC, str(OTHER.to_public())}
    assert SECRET not in repr(identities) and "2 age identities" in repr(identities)


@pytest.mark.parametrize(("text", "message"), [
    ("", "holds no age identity"),
    ("# only a comment\n", "holds no age identity"),
    (PUBLIC, "line 1 is not an age identity: it is a public key"),
    (f"# c\n{SECRET[:-3]}", "line 2 starts like an age identity but is not a valid one"),
    (f"{SECRET[:-1]}Q", "line 1 starts like an age identity but is not a valid one"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "ssh keys are not supported"),
    ("AGE-PLUGIN-YUBIKEY-1QQQ", "plugin identities are not supported"),
    ("hunter2", "expected AGE-SECRET-KEY-1"),
], ids=_stable_id)
def test_bad_identities_are_named_by_line_and_never_echoed(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        Identities.parse(text)
    shown = str(raised.value)
    assert SECRET[:-3] not in shown and "hunter2" not in shown and "YUBIKEY" not in shown
    assert raised.value.__cause__ is None  # pyrage's error is not chained either
    assert raised.value.__context__ is None or raised.value.__suppress_context__


def test_a_dropped_stream_has_ended_its_thread_by_the_time_close_returns() -> None:
    """A process that fails mid-stream exits right after: a pyrage thread still running then is killed inside Rust
    code by the interpreter's shutdown, and the process aborts (SIGABRT, exit -6, seen with `decrypt` of a damaged
    object). So close() waits for the thread to end (it ends at once: its reads return end of input)."""
    for _ in range(20):
        stage = AgeEncryptor((PUBLIC,))
        stage.write(b"x" * 100_000)
        reading = decrypted(_chunks(OBJECT, 1000), IDENTITIES, STARTS)
        next(reading)
        stage.close()
        reading.close()
        assert not _age_threads()
