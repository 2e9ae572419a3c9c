from __future__ import annotations

from pipelines.summary import add_counts


def test_add_counts_sums_batches() -> None:
    assert add_counts([{"offered": 2, "images_added": 1}, {"offered": 3, "unreadable": 1}]) == {
        "images_added": 1,
        "offered": 5,
        "unreadable": 1,
    }
    assert add_counts([]) == {}
