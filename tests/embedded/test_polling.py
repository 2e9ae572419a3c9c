"""`wait_until` returns what the condition found, names what never came, and does not swallow errors."""

from __future__ import annotations

import itertools

import pytest

from embedded.polling import wait_until


def test_it_returns_the_first_truthy_answer() -> None:
    answers = iter([None, [], "found"])
    assert wait_until(lambda: next(answers), timeout_s=5, interval_s=0.01) == "found"


def test_it_names_what_never_came() -> None:
    calls = itertools.count()
    with pytest.raises(TimeoutError, match=r"run r1 still queued \(waited 0 s\)"):
        wait_until(lambda: next(calls) < 0, timeout_s=0.2, interval_s=0.05, what=lambda: "run r1 still queued")


def test_an_error_in_the_condition_is_raised_at_once() -> None:
    def broken() -> bool:
        raise ValueError("the server answered 500")

    with pytest.raises(ValueError, match="answered 500"):
        wait_until(broken, timeout_s=60)
