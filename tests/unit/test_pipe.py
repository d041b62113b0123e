"""The bounded pipe: bytes arrive in order, errors arrive as errors, and the bound holds."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from backup.pipe import Pipe, PipeCancelled

WAIT = 5.0  # generous upper limit for something that must happen; never reached when the code is right
SETTLE = 0.2  # how long to give something that must NOT happen the chance to happen


class Runner:
    """Runs fn on a thread and keeps its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        self.started.set()
        try:
            self.result = fn()
        except BaseException as exc:  # noqa: BLE001 - kept for the test to inspect
            self.error = exc
        finally:
            self.done.set()

    def finish(self) -> Any:
        assert self.done.wait(WAIT), "thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def read_all(pipe: Pipe) -> bytes:
    out = []
    while chunk := pipe.read():
        out.append(chunk)
    return b"".join(out)


def test_all_bytes_arrive_in_order() -> None:
    rng = random.Random(3)
    chunks = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(500)]
    pipe = Pipe(max_bytes=256)

    def produce() -> None:
        for chunk in chunks:
            pipe.write(chunk)
        pipe.close()

    producer = Runner(produce)
    assert read_all(pipe) == b"".join(chunks)
    producer.finish()


def test_producer_error_is_raised_by_the_reader_not_a_clean_end() -> None:
    pipe = Pipe(max_bytes=1024)
    boom = RuntimeError("cloudant went away")

    def produce() -> None:
        pipe.write(b"[1]\n")
        pipe.write(b"[2]\n")
        pipe.close(error=boom)

    producer = Runner(produce)
    with pytest.raises(RuntimeError) as info:
        read_all(pipe)
    assert info.value is boom
    producer.finish()


def test_error_after_all_data_was_read_is_still_raised() -> None:
    pipe = Pipe(max_bytes=1024)
    pipe.write(b"data")
    assert pipe.read() == b"data"
    pipe.close(error=ValueError("late failure"))
    with pytest.raises(ValueError, match="late failure"):
        pipe.read()


def test_clean_close_gives_empty_read_every_time() -> None:
    pipe = Pipe(max_bytes=16)
    pipe.write(b"x")
    pipe.close()
    assert pipe.read() == b"x"
    assert pipe.read() == b""
    assert pipe.read() == b""


def test_reader_waits_for_data_rather_than_ending() -> None:
    pipe = Pipe(max_bytes=16)
    reader = Runner(pipe.read)
    assert not reader.done.wait(SETTLE)
    pipe.write(b"late")
    assert reader.finish() == b"late"


def test_cancel_makes_a_blocked_writer_raise() -> None:
    pipe = Pipe(max_bytes=4)
    pipe.write(b"full")
    writer = Runner(lambda: pipe.write(b"more"))
    assert writer.started.wait(WAIT)
    assert not writer.done.wait(SETTLE), "the writer should be blocked by the bound"
    pipe.cancel()
    with pytest.raises(PipeCancelled):
        writer.finish()


def test_write_after_cancel_raises() -> None:
    pipe = Pipe(max_bytes=4)
    pipe.cancel()
    with pytest.raises(PipeCancelled):
        pipe.write(b"x")


def test_write_after_close_is_refused() -> None:
    pipe = Pipe(max_bytes=4)
    pipe.close()
    with pytest.raises(RuntimeError):
        pipe.write(b"x")


def test_writer_blocks_at_the_bound_until_the_reader_takes_a_chunk() -> None:
    pipe = Pipe(max_bytes=10)
    pipe.write(b"12345")
    pipe.write(b"67890")  # exactly at the bound: still fits
    writer = Runner(lambda: pipe.write(b"!"))
    assert not writer.done.wait(SETTLE), "a write beyond max_bytes must wait"
    assert pipe.read() == b"12345"
    writer.finish()
    pipe.close()
    assert read_all(pipe) == b"67890!"


def test_chunk_bigger_than_the_bound_passes_through_an_empty_pipe() -> None:
    pipe = Pipe(max_bytes=8)
    big = bytes(range(256)) * 4
    Runner(lambda: pipe.write(big)).finish()
    pipe.close()
    assert read_all(pipe) == big


def test_chunk_bigger_than_the_bound_waits_for_the_pipe_to_empty() -> None:
    pipe = Pipe(max_bytes=8)
    pipe.write(b"a")
    big = b"B" * 100
    writer = Runner(lambda: pipe.write(big))
    assert not writer.done.wait(SETTLE)
    assert pipe.read() == b"a"
    writer.finish()
    pipe.close()
    assert read_all(pipe) == big


def test_empty_write_does_not_look_like_the_end() -> None:
    pipe = Pipe(max_bytes=16)
    pipe.write(b"")
    pipe.write(b"data")
    pipe.close()
    assert read_all(pipe) == b"data"
