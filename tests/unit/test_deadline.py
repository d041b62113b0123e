"""The invocation's deadline: the earliest of `__OW_DEADLINE` and the budget, a margin before it, a fake clock."""

from __future__ import annotations

import pytest

from backup.deadline import Deadline

NOW = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ow_deadline(seconds_from_now: float) -> dict[str, str]:
    return {"__OW_DEADLINE": str(int((NOW + seconds_from_now) * 1000))}


def test_nothing_given_means_no_deadline() -> None:
    deadline = Deadline.from_environment({}, None, None, clock=FakeClock())
    assert deadline.at is None and deadline.remaining() is None and not deadline.reached()
    assert Deadline.none().at is None and not Deadline.none().reached()


def test_budget_zero_is_no_budget() -> None:
    assert Deadline.from_environment({}, 0, None, clock=FakeClock()).at is None


def test_budget_counts_from_now() -> None:
    deadline = Deadline.from_environment({}, 100, None, clock=FakeClock())
    assert deadline.at == NOW + 100
    assert deadline.remaining() == 100


def test_ow_deadline_is_epoch_milliseconds() -> None:
    deadline = Deadline.from_environment(ow_deadline(60), None, None, clock=FakeClock())
    assert deadline.at == pytest.approx(NOW + 60)


@pytest.mark.parametrize(("ow", "budget", "expected"), [(60, 100, 60), (100, 60, 60), (60, 60, 60)],
                         ids=["ow-earlier", "budget-earlier", "equal"])
def test_the_earliest_of_ow_deadline_and_budget_wins(ow: int, budget: int, expected: int) -> None:
    deadline = Deadline.from_environment(ow_deadline(ow), budget, None, clock=FakeClock())
    assert deadline.at == pytest.approx(NOW + expected)


@pytest.mark.parametrize(("available", "margin"), [(1, 1.0), (2, 1.0), (4, 1.0), (8, 2.0), (40, 10.0), (120, 30.0),
                                                   (121, 30.0), (600, 30.0), (86_400, 30.0)])
def test_default_margin_is_a_quarter_of_the_time_between_1_and_30_seconds(available: int, margin: float) -> None:
    by_budget = Deadline.from_environment({}, available, None, clock=FakeClock())
    by_ow = Deadline.from_environment(ow_deadline(available), None, None, clock=FakeClock())
    assert by_budget.margin == pytest.approx(margin)
    assert by_ow.margin == pytest.approx(margin)


def test_default_margin_comes_from_the_earliest_deadline() -> None:
    deadline = Deadline.from_environment(ow_deadline(600), 40, None, clock=FakeClock())
    assert deadline.at == NOW + 40 and deadline.margin == pytest.approx(10.0)


@pytest.mark.parametrize("margin", [0, 1, 5, 45, 3600])
def test_an_explicit_margin_is_used_as_given(margin: int) -> None:
    deadline = Deadline.from_environment({}, 100, margin, clock=FakeClock())
    assert deadline.margin == float(margin)
    assert isinstance(deadline.margin, float)


@pytest.mark.parametrize("raw", ["", "   ", "abc", "12.5", "-5000", "1e12", "0x10", "soon"])
def test_a_deadline_that_is_not_all_digits_is_ignored(raw: str) -> None:
    assert Deadline.from_environment({"__OW_DEADLINE": raw}, None, None, clock=FakeClock()).at is None
    with_budget = Deadline.from_environment({"__OW_DEADLINE": raw}, 30, None, clock=FakeClock())
    assert with_budget.at == NOW + 30


def test_surrounding_whitespace_around_digits_is_tolerated() -> None:
    raw = f" {int((NOW + 60) * 1000)}\n"
    assert Deadline.from_environment({"__OW_DEADLINE": raw}, None, None, clock=FakeClock()).at == pytest.approx(NOW + 60)


def test_other_environment_variables_do_not_matter() -> None:
    environ = {"__OW_DEADLINE_X": "1", "TIME_BUDGET": "5", "__OW_ACTIVATION_ID": "abc"}
    assert Deadline.from_environment(environ, None, None, clock=FakeClock()).at is None


def test_reached_at_deadline_minus_margin_with_a_fake_clock() -> None:
    clock = FakeClock()
    deadline = Deadline.from_environment({}, 100, 10, clock=clock)
    assert not deadline.reached()
    clock.now = NOW + 89.999
    assert not deadline.reached()
    assert deadline.remaining() == pytest.approx(10.001)
    clock.now = NOW + 90
    assert deadline.reached()
    clock.now = NOW + 150  # past the deadline itself: still reached, remaining goes negative
    assert deadline.reached() and deadline.remaining() == pytest.approx(-50)


def test_reached_with_the_default_margin_and_an_ow_deadline() -> None:
    clock = FakeClock()
    deadline = Deadline.from_environment(ow_deadline(20), None, None, clock=clock)  # margin 5 s
    clock.now = NOW + 14.9
    assert not deadline.reached()
    clock.now = NOW + 15.0
    assert deadline.reached()


def test_a_deadline_already_past_is_reached_at_once_with_the_minimum_margin() -> None:
    deadline = Deadline.from_environment(ow_deadline(-10), None, None, clock=FakeClock())
    assert deadline.margin == 1.0
    assert deadline.reached()


def test_a_margin_as_big_as_the_budget_stops_at_once() -> None:
    assert Deadline.from_environment({}, 1, 1, clock=FakeClock()).reached()
    assert not Deadline.from_environment({}, 2, 1, clock=FakeClock()).reached()


def test_the_clock_is_read_when_asked_not_frozen_at_creation() -> None:
    clock = FakeClock()
    deadline = Deadline(NOW + 10, 2.0, clock)
    assert deadline.remaining() == 10
    clock.now += 4
    assert deadline.remaining() == 6 and not deadline.reached()
    clock.now += 4
    assert deadline.reached()


def test_a_deadline_of_unicode_digit_symbols_is_ignored_not_a_crash() -> None:
    assert Deadline.from_environment({"__OW_DEADLINE": "\u00b2"}, None, None, clock=FakeClock()).at is None
