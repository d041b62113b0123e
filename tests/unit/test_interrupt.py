"""backup.interrupt: SIGTERM/SIGINT raise Interrupted in the main thread while an operation runs, never while an
error's clean-up (or a deferred block) runs, and the previous handlers come back afterwards. The signals are sent
to this very process (pytest's main thread), so a handler missing would end the test run: that is the test."""

from __future__ import annotations

import signal
import threading

import pytest

from backup import interrupt
from backup.errors import BackupError, Interrupted, Terminated


def test_sigterm_raises_terminated_in_the_block_and_the_previous_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, interrupt.interruptible() as stop:
        signal.raise_signal(signal.SIGTERM)
        for _ in range(1000):  # the handler runs between two bytecodes
            pass
    assert isinstance(caught.value, BackupError) and caught.value.exit_code == 143
    assert caught.value.kind == "interrupted" and str(caught.value).startswith("interrupted by SIGTERM")
    assert stop is not None and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigint_raises_interrupted_with_exit_code_130() -> None:
    with pytest.raises(Interrupted) as caught, interrupt.interruptible():
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):
            pass
    assert not isinstance(caught.value, Terminated) and caught.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_during_an_errors_clean_up_waits_for_the_next_check() -> None:
    cleaned = []
    with pytest.raises(Terminated), interrupt.interruptible():
        try:
            raise ValueError("some failure")
        except ValueError:
            signal.raise_signal(signal.SIGTERM)  # held: the clean-up below runs whole
            for _ in range(1000):
                pass
            cleaned.append(True)
        interrupt.check()
    assert cleaned == [True]


def test_a_deferred_block_is_never_cut_short_and_the_signal_is_raised_at_its_end() -> None:
    steps = []
    with pytest.raises(Terminated), interrupt.interruptible(), interrupt.deferred():
        signal.raise_signal(signal.SIGTERM)
        for _ in range(1000):
            pass
        steps.append("after the signal")
    assert steps == ["after the signal"]


def test_a_swallowed_signal_is_raised_again_by_the_next_check() -> None:
    with pytest.raises(Terminated), interrupt.interruptible():
        try:
            signal.raise_signal(signal.SIGTERM)
            for _ in range(1000):
                pass
        except Exception:  # noqa: BLE001 - what a library might do
            pass
        interrupt.check()  # what every COS and Cloudant call does first


def test_outside_the_operation_a_signal_is_only_recorded() -> None:
    with interrupt.signals_handled() as stop:
        signal.raise_signal(signal.SIGTERM)
        for _ in range(1000):
            pass
        assert stop is not None and stop.signum == signal.SIGTERM
        with pytest.raises(Terminated), interrupt.interruptible():  # one recorded before the operation stops it
            pass


def test_in_another_thread_nothing_is_installed() -> None:
    seen = []

    def run() -> None:
        with interrupt.interruptible() as stop:
            seen.append(stop)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [None]
