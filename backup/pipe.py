"""A bounded pipe between the reader thread (Cloudant) and the uploader (COS) that carries errors.

The reader blocks when `max_bytes` are waiting, so memory stays flat however big the database is.
A reader failure closes the pipe *with the error*: the uploader raises instead of seeing a clean end,
so a truncated backup can never be completed. An uploader failure cancels the pipe: the reader's
next write raises and its thread ends.
"""

from __future__ import annotations

import collections
import threading


class PipeCancelled(Exception):
    """The consumer gave up; the producer should stop."""


class Pipe:
    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._closed = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._cond = threading.Condition()

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return  # an empty chunk would read as the end of the stream
        with self._cond:
            # A chunk bigger than the bound still goes through once the pipe is empty: no deadlock.
            while self._size and self._size + len(chunk) > self._max and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                raise PipeCancelled()
            if self._closed:
                raise RuntimeError("write to a closed pipe")
            self._chunks.append(chunk)
            self._size += len(chunk)
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """End of data; with `error`, the consumer raises it instead of seeing the end."""
        with self._cond:
            self._closed = True
            self._error = error
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()

    def read(self) -> bytes:
        """The next chunk, or b"" at a clean end; raises the producer's error if it failed."""
        with self._cond:
            while not self._chunks and not self._closed:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if not self._chunks:
                return b""
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            self._cond.notify_all()
            return chunk
