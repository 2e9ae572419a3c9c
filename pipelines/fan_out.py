"""Fan-out and fan-in: work split into batches for mapped tasks, and their counts added up again for the
run's summary (logs, XCom, the demo's report)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

# How many mapped tasks a dump run is divided into unless its params say: every worker slot of a node busy.
DUMP_PARTS = 16


def batched(items: Sequence[Item], batch_size: int) -> list[list[Item]]:
    """`items` in order, cut into lists of `batch_size` (the last may be shorter)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return [list(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]


def add_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Sum per-batch counts into the run's totals and log them."""
    total: Counter[str] = Counter()
    for batch in counts:
        total.update(batch)
    logger.info("run totals: %s", ", ".join(f"{name}={value}" for name, value in sorted(total.items())) or "nothing")
    return dict(sorted(total.items()))
