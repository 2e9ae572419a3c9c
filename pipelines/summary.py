"""Run summaries: the counts tasks return, combined, for logs, XCom and the demo's report."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

logger = logging.getLogger(__name__)


def add_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Sum per-batch counts into the run's totals and log them."""
    total: Counter[str] = Counter()
    for batch in counts:
        total.update(batch)
    logger.info("run totals: %s", ", ".join(f"{name}={value}" for name, value in sorted(total.items())) or "nothing")
    return dict(sorted(total.items()))
