"""How a dump run is divided into parts for mapped tasks: contiguous member ranges of about equal bytes that
cover every wanted member once, and a `max_images` slice spread over them exactly."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from pipelines.archives import ArchiveEntry
from pipelines.catalog import Catalog, FetchFailure, SightingRecord
from pipelines.raw_zone import content_digest
from pipelines.sources.dumps import DumpPart, divide, part_bytes, store_members
from pipelines.storage import FileStore
from pipelines.takedowns import TakedownRequest, apply_takedown
from sandbox.library import PhotoLibrary

LIBRARY = PhotoLibrary()

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


def test_members_a_takedown_withdrew_are_refused_by_source_id_and_by_bytes(lake: tuple[FileStore, Catalog]) -> None:
    store, catalog = lake
    photos = {name: LIBRARY.encode(number) for number, name in enumerate(("a", "b", "c"))}

    def members(*pairs: tuple[str, str]) -> list[ArchiveEntry]:
        return [ArchiveEntry(f"{source_id}.JPEG", len(photos[photo]), photos[photo]) for source_id, photo in pairs]

    def to_sighting(member: ArchiveEntry) -> SightingRecord:
        source_id = member.name.removesuffix(".JPEG")
        return SightingRecord("imagenet", source_id, f"https://dump.example/train.tar#{member.name}")

    store_members(members(("a", "a"), ("b", "b")), to_sighting, store, catalog, run_id="run-1")
    request = TakedownRequest(reason="the author asked", requested_by="ana", source="imagenet", source_id="a")
    apply_takedown(request, store, catalog, tracking_uri="")  # in no dataset: MLflow is not asked

    counts = store_members(
        members(("a", "a"), ("a-copy", "a"), ("c", "c")), to_sighting, store, catalog, run_id="run-2"
    )

    assert (counts["withdrawn"], counts["stored"], counts["already_known"]) == (2, 1, 0)
    with catalog.session() as session:
        failures = session.scalars(select(FetchFailure).where(FetchFailure.run_id == "run-2")).all()
    assert sorted(failure.source_id for failure in failures) == ["a", "a-copy"]
    assert all(request.takedown_id in failure.reason for failure in failures)
    assert store.list("raw/") and not any(content_digest(photos["a"]) in key for key in store.list("raw/"))
