"""Work cut into batches for mapped tasks, and their counts added back up."""

from __future__ import annotations

import pytest

from pipelines.fan_out import add_counts, batched


def test_batched_keeps_order_and_leaves_the_remainder_last() -> None:
    assert batched(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batched([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        batched([1], 0)


def test_add_counts_sums_batches() -> None:
    assert add_counts([{"offered": 2, "images_added": 1}, {"offered": 3, "unreadable": 1}]) == {
        "images_added": 1,
        "offered": 5,
        "unreadable": 1,
    }
    assert add_counts([]) == {}
