"""The web connectors' shared layer: windows, candidates through XCom, and storing with failure records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from pipelines.catalog import Catalog, FetchFailure, Sighting
from pipelines.http import HttpError
from pipelines.sources.web import Candidate, Window, candidate_batches, run_window, store_candidates, unique
from pipelines.storage import FileStore

DAY = datetime(2026, 11, 22, tzinfo=UTC)


def candidate(number: int, source: str = "unsplash") -> Candidate:
    return Candidate(
        source=source,
        source_id=f"id-{number}",
        url=f"https://images.example/{number}.jpg",
        author="Hana Sato",
        license="CC0",
        extra={"download_location": f"https://api/{number}"},
    )


def test_window_is_half_open_and_splits_in_halves() -> None:
    window = Window(DAY, DAY + timedelta(days=1))
    assert DAY in window and DAY + timedelta(days=1) not in window
    left, right = window.halves()
    assert (left.end, right.start) == (DAY + timedelta(hours=12),) * 2
    with pytest.raises(ValueError):
        Window(DAY, DAY)
    with pytest.raises(ValueError):
        Window(datetime(2026, 11, 22), datetime(2026, 11, 23))


def test_candidates_round_trip_through_xcom_batches() -> None:
    offered = [candidate(number) for number in range(5)]
    split = candidate_batches(offered, 2)
    assert [len(batch) for batch in split] == [2, 2, 1]
    assert [Candidate.from_xcom(item) for batch in split for item in batch] == offered
    assert unique([*offered, candidate(1)]) == offered


def test_store_candidates_records_failures_and_skips_known_ids(tmp_path: Path) -> None:
    store, catalog = FileStore(tmp_path / "lake"), Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    catalog.migrate()
    fetched = []

    def fetch(offer: Candidate) -> bytes:
        fetched.append(offer.source_id)
        if offer.source_id == "id-2":
            raise HttpError("HTTP 404: gone", status=404)
        return f"photo {offer.source_id}".encode()

    offered = [candidate(number) for number in range(4)]
    counts = store_candidates(offered, fetch, store, catalog, run_id="run-1")
    assert counts == {"offered": 4, "already_known": 0, "stored": 3, "objects_written": 3, "fetch_failed": 1}
    with catalog.session() as session:
        failure = session.scalars(select(FetchFailure)).one()
        assert (failure.source_id, failure.run_id) == ("id-2", "run-1") and "404" in failure.reason
        assert session.scalars(select(Sighting.license)).all() == ["CC0"] * 3

    fetched.clear()
    again = store_candidates(offered, fetch, store, catalog, run_id="run-1")
    assert fetched == ["id-2"], "only the photo that failed is tried again"
    assert again["already_known"] == 3 and again.get("stored", 0) == 0
    assert catalog.count(FetchFailure) == 1, "a retried run records its failure once"


def test_run_window_uses_the_data_interval_or_the_day_before_a_manual_trigger() -> None:
    assert run_window(DAY, DAY + timedelta(days=1), DAY + timedelta(days=1, hours=3)) == Window(
        DAY, DAY + timedelta(days=1)
    )
    manual = run_window(None, None, DAY + timedelta(days=1, hours=15, minutes=4))
    assert manual == Window(DAY, DAY + timedelta(days=1))
