"""Waiting for something to become true: the one way the stack's clients, the demo and the tests wait."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

Result = TypeVar("Result")


def wait_until(
    condition: Callable[[], Result],
    *,
    timeout_s: float,
    interval_s: float = 1.0,
    what: str | Callable[[], str] = "the condition",
) -> Result:
    """Call `condition` every `interval_s` until it returns something truthy, and return that; after
    `timeout_s` raise TimeoutError naming `what` (a callable is asked then, so it can say how things stand).
    An exception from `condition` is not waited out: it propagates at once."""
    retrying = Retrying(
        retry=retry_if_result(operator.not_), stop=stop_after_delay(timeout_s), wait=wait_fixed(interval_s)
    )
    try:
        return retrying(condition)
    except RetryError:
        description = what() if callable(what) else what
        raise TimeoutError(f"{description} (waited {timeout_s:.0f} s)") from None
