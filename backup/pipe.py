"""A bounded pipe between the reader thread (Cloudant) and the uploader (COS) that carries errors.

The reader blocks when `max_bytes` are waiting, so memory stays flat however big the database is.
A reader failure closes the pipe *with the error*: the uploader raises instead of seeing a clean end,
so a truncated backup can never be completed. An uploader failure (or a deadline) cancels the pipe:
the reader's next write raises and its thread ends.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class PipeCancelled(Exception):
    """The consumer gave up; the producer should stop."""


class Pipe:
    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._size = 0
        self._closed = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._cond = threading.Condition()

    def write(self, item: Any, size: int | None = None) -> None:
        """Queue an item (bytes, or anything with its byte `size` given); blocks while the pipe is full."""
        size = len(item) if size is None else size
        if not size:
            return  # an empty chunk would read as the end of the stream
        with self._cond:
            # An item bigger than the bound still goes through once the pipe is empty: no deadlock.
            while self._size and self._size + size > self._max and not self._cancelled:
                self._cond.wait()
            if self._cancelled:
                raise PipeCancelled()
            if self._closed:
                raise RuntimeError("write to a closed pipe")
            self._items.append((item, size))
            self._size += size
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
            self._items.clear()
            self._size = 0
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Any:
        """The next item, or None at a clean end; raises the producer's error if it failed, and
        TimeoutError when nothing arrived within `timeout` seconds (so the caller can check a deadline)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout=timeout):
                raise TimeoutError("nothing in the pipe yet")
            if self._error is not None:
                raise self._error
            if not self._items:
                return None
            item, size = self._items.popleft()
            self._size -= size
            self._cond.notify_all()
            return item

    def read(self) -> bytes:
        """Bytes-only view: the next chunk, or b"" at a clean end."""
        item = self.get()
        return b"" if item is None else item
