"""How a dump run is divided into parts for mapped tasks: contiguous member ranges of about equal bytes that
cover every wanted member once, and a `max_images` slice spread over them exactly."""

from __future__ import annotations

import pytest

from pipelines.sources.dumps import DumpPart, divide, part_bytes

URL = "https://dumps.example/ILSVRC2012_img_train.tar"


def covered(parts: list[DumpPart]) -> list[int]:
    return [index for part in parts for index in range(part.first, part.stop or 0)]


def test_parts_are_contiguous_ranges_of_about_equal_bytes() -> None:
    sizes = [10] * 12
    parts, left = divide(URL, sizes, part_bytes(sum(sizes), 4))
    assert [(part.first, part.stop) for part in parts] == [(0, 3), (3, 6), (6, 9), (9, 12)]
    assert covered(parts) == list(range(12)) and left is None and {part.take for part in parts} == {None}


def test_members_the_run_does_not_want_make_no_part_of_their_own() -> None:
    sizes = [0, 0, 50, 0, 50, 0, 0]
    parts, _ = divide(URL, sizes, part_bytes(100, 2))
    assert [(part.first, part.stop) for part in parts] == [(0, 4), (4, 7)]
    assert divide(URL, [0, 0, 0], 10.0)[0] == []
    assert [(part.first, part.stop) for part in divide(URL, [50, 0, 0, 0, 50], 25.0)[0]] == [(0, 4), (4, 5)]


def test_a_budget_takes_the_first_wanted_images_and_leaves_the_rest_unplanned() -> None:
    held = [3, 3, 3, 3, 3]
    parts, left = divide(URL, [30] * 5, part_bytes(150, 2), budget=7, wanted=held.__getitem__)
    assert [(part.first, part.stop, part.take) for part in parts] == [(0, 3, 7)]
    parts, left = divide(URL, [30] * 5, part_bytes(60, 2), budget=7, wanted=held.__getitem__)
    assert [(part.first, part.stop, part.take) for part in parts] == [(0, 1, 3), (1, 2, 3), (2, 3, 1)]
    assert left == 0

    parts, left = divide(URL, [30] * 5, part_bytes(150, 5), budget=20, wanted=held.__getitem__)
    assert sum(part.take or 0 for part in parts) == 15 and left == 5  # on into the next archive


def test_a_part_travels_as_a_dict() -> None:
    part = DumpPart(URL, 3, 9, take=40)
    assert DumpPart(**part.as_dict()) == part
    assert "members 3 to 9" in part.label


def test_a_run_needs_a_part() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        part_bytes(100, 0)
