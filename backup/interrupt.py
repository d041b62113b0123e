"""Signals: SIGTERM (what `timeout`, systemd, `docker stop`, Kubernetes and Code Engine send before they kill) and
SIGINT (Ctrl-C) stop an operation the way an error does.

While an `interruptible()` block runs in the main thread, the first of these signals raises `Interrupted` (SIGINT)
or `Terminated` (SIGTERM), both BackupErrors, in it. So whatever cleans up after an error runs: a backup's upload is
aborted and the checkpoint the run owns deleted, and the CLI prints one JSON result line and exits 128 + the
signal's number. Python runs signal handlers in the main thread only, between two bytecodes of whatever it is doing:

* while an error is already being cleaned up (an exception is being handled: an `except`/`finally` block, or
  `__exit__` with an exception), or inside a `deferred()` block (an abort, a checkpoint's removal), the signal
  is held, not raised: the clean-up is never cut short. Further signals are ignored the same way; SIGKILL still ends
  the process at once (what that leaves, the next backup cleans: see leftovers.py).
* a held or swallowed signal (a library caught the exception) is raised again by `check()`, which every Cloudant and
  COS call and the backup's main loop make: the run stops at its next request.

`signals_handled()` installs the handlers (main thread only) without arming them, for an entry point (CLI, Code
Engine job) to cover its start and its last output line: a signal there is recorded, never a traceback. The
previous handlers come back when the outermost block ends. Elsewhere (another thread) both are no-ops.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from backup.errors import Interrupted, Terminated

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Stop:
    """What the handlers saw: `signum` is the first signal received (None: none)."""

    signum: int | None = None
    armed: int = 0  # > 0: inside interruptible(): a signal raises
    held: int = 0  # > 0: inside deferred(): a signal waits
    previous: dict[int, Any] = field(default_factory=dict)


_current: Stop | None = None


def interrupted(signum: int) -> Interrupted:
    name = signal.Signals(signum).name
    cls = Terminated if signum == signal.SIGTERM else Interrupted
    return cls(f"interrupted by {name}: the run was stopped before it finished, and cleaned up as after an error")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def check() -> None:
    """Raise the signal received, if any, unless it must wait (not armed, deferred, an error's clean-up running,
    or not the main thread)."""
    stop = _current
    if stop is None or stop.signum is None or not stop.armed or stop.held or not _main_thread():
        return
    if sys.exc_info()[1] is not None:
        return  # an exception is being handled: that clean-up finishes first
    raise interrupted(stop.signum)


def _handler(signum: int, _frame: Any) -> None:
    # No logging here: the main thread may be inside Log._write, holding its lock.
    stop = _current
    if stop is None:
        return
    if stop.signum is None:
        stop.signum = signum
    check()


@contextmanager
def signals_handled() -> Iterator[Stop | None]:
    """SIGTERM and SIGINT are caught (recorded) for the block; they raise only inside `interruptible()`. Nested
    blocks share the outer one's. Yields None outside the main thread (nothing is installed)."""
    global _current
    if _current is not None:
        yield _current
        return
    if not _main_thread():
        yield None
        return
    stop = Stop()
    for sig in SIGNALS:
        stop.previous[sig] = signal.getsignal(sig)
    _current = stop
    try:
        for sig in SIGNALS:
            signal.signal(sig, _handler)
        yield stop
    finally:
        _current = None
        for number, previous in stop.previous.items():
            signal.signal(number, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def interruptible() -> Iterator[Stop | None]:
    """While the block runs, SIGTERM/SIGINT raise in it (see the module). A signal received before the block (during
    start-up) stops it at once."""
    with signals_handled() as stop:
        if stop is None:
            yield None
            return
        stop.armed += 1
        try:
            check()
            yield stop
        finally:
            stop.armed -= 1


@contextmanager
def deferred() -> Iterator[None]:
    """A signal received inside the block waits until it ends (a clean-up that must not be cut short), and is raised
    then, unless an exception leaves the block (it goes on; the signal waits for the next `check()`)."""
    stop = _current
    if stop is None or not _main_thread():
        yield
        return
    stop.held += 1
    try:
        yield
    finally:
        stop.held -= 1
    check()
