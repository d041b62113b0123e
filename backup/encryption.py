"""Encryption stages of a backup object (ENCRYPT_TO, AGE_IDENTITY): the age format (age-encryption.org/v1) through
pyrage, after compression. No I/O of their own.

    compressed bytes --> AgeEncryptor.write / end_segment --> MultipartUpload
    object --> decrypted --> decompressed --> lines

An invocation cannot continue another's age stream (it would need that stream's file key), so an encrypted object
is a sequence of age streams, one per segment: `end_segment()` ends one (at a checkpoint, at the end) and the next
write begins another, with a new file key. `AgeEncryptor.starts` gives each stream's stored offset, for the
manifest. An object of one stream is an ordinary age file (`age -d`); one of several is read with those offsets
(`decrypted`), since `age -d` stops at the end of the first stream's final chunk and rejects what follows.

pyrage has no incremental calls, only whole buffers or file-like objects it pulls from and writes to: each stream
runs pyrage's io call on a thread of its own (_Worker), driven a piece at a time, so memory is a piece plus an age
chunk (64 KiB) whatever the object's size. age authenticates each chunk before giving its plaintext, and a stream
without its final chunk fails at its end.

Keys: ENCRYPT_TO holds public keys only (`age1...`), AGE_IDENTITY private ones (`AGE-SECRET-KEY-1...`, an identity
file's content). No message names a private key; the recipients (public keys) are what the manifest records.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyrage
from pyrage import x25519

from backup.errors import BackupError, ConfigError, FormatError
from backup.gunzip import STEP

RECIPIENT_PREFIX = "age1"
IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
AGE_MAGIC = b"age-encryption.org/v1\n"
_NO_MATCHING_KEYS = "No matching keys found"  # age's error when no identity unwraps the file key


class WrongIdentity(ConfigError):
    """AGE_IDENTITY holds none of the private keys the backup was encrypted to."""


def parse_recipients(value: str, name: str = "ENCRYPT_TO") -> tuple[str, ...]:
    """ENCRYPT_TO's comma-separated age public keys, checked, in their canonical spelling (what the manifest
    records), without repeats. A message names a bad item by its position: only one that is meant as a public
    key is quoted (in part), never one that may be a secret."""
    keys: list[str] = []
    for index, item in enumerate((item.strip() for item in value.split(",")), 1):
        if not item:
            continue  # "a,b," or "a, ,b": a stray comma
        if item.upper().startswith("AGE-SECRET-KEY-"):
            raise ConfigError(f"{name}: item {index} is a private key (AGE-SECRET-KEY-...): {name} takes public keys "
                              f"(age1..., `age-keygen -y` prints one); the private key belongs only where backups "
                              "are read (AGE_IDENTITY), never with the backup's parameters")
        if not item.lower().startswith(RECIPIENT_PREFIX):
            raise ConfigError(f"{name}: item {index} is not an age public key (age1..., `age-keygen -y` prints one); "
                              "ssh keys are not supported")
        try:
            key = str(x25519.Recipient.from_str(item))
        except pyrage.RecipientError:
            raise ConfigError(f"{name}: item {index} ({item[:12]}...) is not a valid age public key: its checksum or "
                              "length is wrong (cut short or mistyped?)") from None
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ConfigError(f"{name} holds no age public key (age1...)")
    return tuple(keys)


class Identities:
    """AGE_IDENTITY's private keys (an identity file's content: `#` comments and blank lines skipped), with their
    public keys (`recipients`). Neither its repr nor any message shows a key."""

    def __init__(self, keys: Sequence[x25519.Identity]) -> None:
        self._keys = list(keys)
        self.recipients = frozenset(str(key.to_public()) for key in keys)

    @classmethod
    def parse(cls, text: str, name: str = "AGE_IDENTITY") -> Identities:
        keys = []
        for number, line in enumerate((line.strip() for line in text.splitlines()), 1):
            if not line or line.startswith("#"):
                continue
            if not line.upper().startswith(IDENTITY_PREFIX):
                raise ConfigError(f"{name}: line {number} is not an age identity: {_what_else(line, name)}")
            try:
                keys.append(x25519.Identity.from_str(line))
            except pyrage.IdentityError:
                raise ConfigError(f"{name}: line {number} starts like an age identity but is not a valid one: its "
                                  "checksum or length is wrong (cut short or mistyped?)") from None
        if not keys:
            raise ConfigError(f"{name} holds no age identity (a line AGE-SECRET-KEY-1..., as age-keygen writes it)")
        return cls(keys)

    def __repr__(self) -> str:
        return f"Identities({len(self._keys)} age identities)"

    def check(self, recipients: Iterable[str]) -> None:
        """WrongIdentity unless one of these keys is among the backup's recipients (the manifest's list): told
        before anything is read or written."""
        recipients = tuple(recipients)
        if not self.recipients & set(recipients):
            raise _wrong_identity(recipients)


def _what_else(line: str, name: str) -> str:
    """What a line of AGE_IDENTITY that is no age identity seems to be, in words (never quoted: it may be secret)."""
    if line.lower().startswith(RECIPIENT_PREFIX):
        return f"it is a public key (age1...), and {name} takes the private one (AGE-SECRET-KEY-1...)"
    if line.upper().startswith("AGE-PLUGIN-"):
        return "plugin identities are not supported"
    if "PRIVATE KEY" in line.upper():
        return "ssh keys are not supported"
    return "expected AGE-SECRET-KEY-1... (comments start with #)"


def _wrong_identity(recipients: Sequence[str] | None) -> WrongIdentity:
    to = f" (it is encrypted to {', '.join(recipients)})" if recipients else ""
    return WrongIdentity(f"AGE_IDENTITY does not match any recipient of this backup{to}")


class AgeEncryptor:
    """The push stage: `write()` gives the age bytes for `data` (a stream begins at the first write of a segment);
    `end_segment()` ends the stream (its final chunk). `offset`: the stored bytes before this instance's first
    output (a continued backup's parts and tail), so `starts` are offsets in the object. `close()` (or leaving
    it as a context manager) drops an unfinished stream and its thread."""

    def __init__(self, recipients: Sequence[str], offset: int = 0) -> None:
        self.recipients = tuple(recipients)
        self._keys = [x25519.Recipient.from_str(key) for key in self.recipients]
        self._offset = offset
        self.bytes_in = 0
        self.bytes_out = 0
        self.starts: list[int] = []  # where each stream this instance began starts in the object
        self._stream: _Worker | None = None

    def write(self, data: bytes) -> bytes:
        if not data:
            return b""  # nothing to encrypt: no stream is begun for it
        if self._stream is None:
            self.starts.append(self._offset + self.bytes_out)
            self._stream = _Worker(functools.partial(_encrypt, self._keys), "age-encrypt")
        self.bytes_in += len(data)
        return self._counted(self._stream.feed, data)

    def end_segment(self) -> bytes:
        stream, self._stream = self._stream, None
        return self._counted(stream.finish) if stream is not None else b""

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abandon()

    def __enter__(self) -> AgeEncryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _counted(self, call: Callable[..., bytes], *args: bytes) -> bytes:
        try:
            out = call(*args)
        except (pyrage.EncryptError, OSError) as exc:
            self.close()
            raise BackupError(f"encrypting the backup failed: {exc}") from None
        self.bytes_out += len(out)
        return out


def _encrypt(keys: list[x25519.Recipient], reader: Any, writer: Any) -> None:
    pyrage.encrypt_io(reader, writer, keys)


def decrypted(chunks: Iterable[bytes], identities: Identities, starts: Sequence[int], offset: int = 0,
              recipients: Sequence[str] | None = None, step: int = STEP) -> Iterator[bytes]:
    """The plain bytes of the object's age streams, which begin at the stored offsets `starts` (the manifest's),
    read from stored byte `offset` on (where `chunks` begins: one of `starts`), in pieces of at most about `step`
    bytes (plus an age chunk). `recipients`: the manifest's, to tell a wrong identity from a damaged header.

    WrongIdentity, before any plaintext, when `identities` open none of the first stream; FormatError when a stream
    is damaged (each 64 KiB chunk is authenticated before its plaintext is handed on), cut short, or not where
    `starts` says."""
    streams = _Streams(identities, starts, offset, recipients)
    try:
        for chunk in chunks:
            yield from streams.take(memoryview(chunk), step)
        yield from streams.end()
    finally:
        streams.abandon()  # after a failure, or when the consumer stopped reading: the stream's thread must end


FEED = 64 * 1024  # ciphertext gathered before it is handed to a stream's thread (each hand-over is a thread switch)


class _Streams:
    """The object's age streams in turn: each is handed its bytes, and finished where the next one begins."""

    def __init__(self, identities: Identities, starts: Sequence[int], offset: int,
                 recipients: Sequence[str] | None) -> None:
        self.bounds = sorted(start for start in starts if start >= offset)
        if not self.bounds or self.bounds[0] != offset:
            raise ValueError(f"stored byte {offset} is not where one of the backup's age streams starts")
        self.identities, self.recipients = identities, recipients
        self.position, self.index = offset, 0  # the stored byte next, the stream it belongs to
        self._stream: _Decryption | None = None
        self._buffer = bytearray()

    def take(self, view: memoryview, step: int) -> Iterator[bytes]:
        while view:
            end = self.bounds[self.index + 1] if self.index + 1 < len(self.bounds) else None
            count = min(len(view), step - len(self._buffer), len(view) if end is None else end - self.position)
            self._buffer += view[:count]
            view, self.position = view[count:], self.position + count
            if len(self._buffer) >= min(FEED, step) or self.position == end:
                yield from self._feed()
            if self.position == end:
                yield from self._finish()

    def end(self) -> Iterator[bytes]:
        """The rest, at the end of the object's bytes: the stream being read must end there, and be the last."""
        if self._buffer:
            yield from self._feed()
        if self._stream is not None:
            yield from self._finish()
        if self.index < len(self.bounds):
            raise FormatError(f"the encrypted backup is truncated: it ends at stored byte {self.position}, before its "
                              f"age stream {self.index + 1} of {len(self.bounds)}, which starts at byte "
                              f"{self.bounds[self.index]}")

    def abandon(self) -> None:
        if self._stream is not None:
            self._stream.abandon()

    def _feed(self) -> Iterator[bytes]:
        if self._stream is None:
            self._stream = _Decryption(self.identities, self.recipients, self.index + 1, len(self.bounds),
                                       self.bounds[self.index])
        data = bytes(self._buffer)
        self._buffer.clear()
        if out := self._stream.feed(data):
            yield out

    def _finish(self) -> Iterator[bytes]:
        stream, self._stream = self._stream, None
        self.index += 1
        if stream is not None and (rest := stream.finish()):
            yield rest


class _Decryption:
    """One age stream being decrypted, its pyrage errors told apart as the user needs them."""

    def __init__(self, identities: Identities, recipients: Sequence[str] | None, number: int, count: int,
                 start: int) -> None:
        self.identities, self.recipients = identities, recipients
        self.number, self.count, self.start = number, count, start
        self._worker = _Worker(functools.partial(_decrypt, identities._keys), "age-decrypt")

    def feed(self, data: bytes) -> bytes:
        return self._call(self._worker.feed, data)

    def finish(self) -> bytes:
        return self._call(self._worker.finish)

    def abandon(self) -> None:
        self._worker.abandon()

    def _call(self, call: Callable[..., bytes], *args: bytes) -> bytes:
        try:
            return call(*args)
        except (pyrage.DecryptError, OSError) as exc:  # a damaged payload chunk comes as OSError from pyrage's copy
            self.abandon()
            raise self._error(str(exc)) from None

    def _error(self, text: str) -> BackupError:
        which = f"age stream {self.number} of {self.count} (from stored byte {self.start})"
        if text == _NO_MATCHING_KEYS:
            if self.recipients is not None and self.identities.recipients & set(self.recipients):
                return FormatError(f"the encrypted backup is damaged: the header of its {which} opens with none of "
                                   "AGE_IDENTITY's keys, though the manifest lists one of them as a recipient")
            return _wrong_identity(self.recipients)
        return FormatError(f"the encrypted backup is damaged or truncated in its {which}: {text}")


def _decrypt(keys: list[x25519.Identity], reader: Any, writer: Any) -> None:
    pyrage.decrypt_io(reader, writer, keys)


ABANDON_WAIT = 10.0  # seconds a dropped stream's thread is waited for (it ends in microseconds)


class _Worker:
    """One pyrage io call, `run(reader, writer)` with this object as both, on a thread of its own, driven as a push
    stage: `feed(data)` hands it bytes and returns what it wrote by the time it has used them all (it then waits
    for more, or has ended); `finish()` ends its input, lets it end and returns the rest. Its error is raised
    there. `abandon()` ends its input without waiting: the thread ends by itself, its output dropped."""

    def __init__(self, run: Callable[[Any, Any], None], name: str) -> None:
        self._cond = threading.Condition()
        self._pending = memoryview(b"")  # bytes handed over, not yet read by the thread
        self._ended = False  # no more input: its reads return b""
        self._waiting = False  # the thread waits for input (all handed over is used)
        self._abandoned = False  # its output is dropped
        self._done = False
        self._error: BaseException | None = None
        self._out: list[bytes] = []
        self._thread = threading.Thread(target=self._main, args=(run,), name=name, daemon=True)
        self._thread.start()

    def _main(self, run: Callable[[Any, Any], None]) -> None:
        try:
            run(self, self)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread, by feed or finish
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    # -- the thread's side: the file pyrage reads from and writes to
    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._pending and not self._ended:
                self._waiting = True
                self._cond.notify_all()
                self._cond.wait()
            self._waiting = False
            count = len(self._pending) if size < 0 else size
            out, self._pending = bytes(self._pending[:count]), self._pending[count:]
            return out

    def write(self, data: bytes) -> int:
        with self._cond:
            if not self._abandoned:
                self._out.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    # -- the caller's side
    def feed(self, data: bytes) -> bytes:
        with self._cond:
            self._pending = memoryview(data)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._done or (self._waiting and not self._pending))
        return self._take()

    def finish(self) -> bytes:
        with self._cond:
            self._ended = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._done)
        return self._take()

    def abandon(self) -> None:
        """End the input, drop the output, and wait for the thread to end (at once: its reads return end of input).
        A pyrage call still running when the process exits is killed inside Rust code by the interpreter's shutdown,
        and the process aborts (SIGABRT) instead of exiting with its error."""
        with self._cond:
            self._ended, self._abandoned, self._pending = True, True, memoryview(b"")
            self._out.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=ABANDON_WAIT)

    def _take(self) -> bytes:
        with self._cond:
            out = b"".join(self._out)
            self._out.clear()
        if self._error is not None:
            raise self._error
        return out
