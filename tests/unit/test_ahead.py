"""The next page's request sent ahead on its own thread (cloudant._Ahead): answers, errors, and drops."""

from __future__ import annotations

import threading

import pytest

from backup.cloudant import _Ahead
from backup.errors import CloudantError


class Answer:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_the_answer_and_the_limit_reach_the_caller() -> None:
    answer = Answer()
    ahead = _Ahead(lambda: answer, 1234)
    assert ahead.response() is answer and ahead.limit == 1234 and not answer.closed


def test_an_error_of_the_request_is_raised_in_the_caller() -> None:
    def fail() -> Answer:
        raise CloudantError("reading documents of 'db': rate limited (429) after all retries")

    with pytest.raises(CloudantError, match="429"):
        _Ahead(fail, 10).response()


def test_a_dropped_request_closes_its_answer_whenever_it_arrives() -> None:
    answered = Answer()
    ahead = _Ahead(lambda: answered, 10)
    ahead._thread.join()
    ahead.drop()
    assert answered.closed  # arrived before the drop

    late, release = Answer(), threading.Event()
    ahead = _Ahead(lambda: release.wait(5) and late, 10)
    ahead.drop()
    release.set()
    ahead._thread.join(5)
    assert late.closed  # arrived after the drop
