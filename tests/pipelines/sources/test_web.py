"""The web connectors' shared layer: windows, candidates through XCom, and storing with failure records; and
storing at scale against the Flickr stand-in playing the internet: downloads side by side under latency, a
cap per host, files marked noai refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from pipelines.catalog import Catalog, FetchFailure, Sighting
from pipelines.http import HttpError
from pipelines.settings import Settings
from pipelines.sources import flickr
from pipelines.sources.contract import FetchLimits
from pipelines.sources.flickr import FlickrConfig
from pipelines.sources.web import Candidate, Window, candidate_batches, run_window, store_candidates, unique
from pipelines.storage import FileStore
from sandbox.credentials import FLICKR_API_KEY
from sandbox.library import PhotoLibrary

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


@pytest.fixture
def flickr_photos(sandbox_url: str, settings: Settings, library: PhotoLibrary) -> tuple[FlickrConfig, list[Candidate]]:
    """Forty photos the Flickr stand-in offers, and its connection's configuration."""
    config = FlickrConfig(rest_url=f"{sandbox_url}/flickr/services/rest/", api_key=FLICKR_API_KEY)
    midnight = datetime.combine(library.anchor, clock(), tzinfo=UTC)
    window = Window(midnight - timedelta(days=30), midnight)
    found = flickr.discover(config, flickr.client(config, settings), window, ["flower", "temple", "galaxy"], limit=40)
    assert len(found) == 40
    return config, found


def store_from_flickr(
    config: FlickrConfig, settings: Settings, offered: list[Candidate], catalog: Catalog, lake: Path, **limits: Any
) -> tuple[dict[str, int], float]:
    """Store `offered` through a fresh Flickr client with these fetch limits; the counts and the seconds taken."""
    fetch_limits = FetchLimits(**limits)
    http = flickr.client(config, settings)
    http.limit_fetching(fetch_limits.max_per_host, fetch_limits.honour_no_ai)
    started = time.monotonic()
    counts = store_candidates(
        offered,
        lambda c: flickr.fetch(config, http, c),
        FileStore(lake),
        catalog,
        "run-1",
        fetch_limits.concurrent_fetches,
    )
    return counts, time.monotonic() - started


def test_downloads_run_side_by_side_when_every_image_takes_200_ms(
    flickr_photos: tuple[FlickrConfig, list[Candidate]], settings: Settings, catalog: Catalog, tmp_path: Path, network
) -> None:
    config, found = flickr_photos
    network.delay(200)
    serial, serial_s = store_from_flickr(config, settings, found[:8], catalog, tmp_path, concurrent_fetches=1)
    side_by_side, side_by_side_s = store_from_flickr(
        config, settings, found[8:16], catalog, tmp_path, concurrent_fetches=8, max_per_host=8
    )
    assert serial["stored"] == side_by_side["stored"] == 8
    assert serial_s >= 8 * 0.2
    assert side_by_side_s < serial_s / 3, (serial_s, side_by_side_s)


def test_an_image_host_never_sees_more_requests_at_once_than_its_cap(
    flickr_photos: tuple[FlickrConfig, list[Candidate]], settings: Settings, catalog: Catalog, tmp_path: Path, network
) -> None:
    config, found = flickr_photos
    network.delay(100)
    counts, _ = store_from_flickr(config, settings, found, catalog, tmp_path, concurrent_fetches=16, max_per_host=3)
    assert counts["stored"] == len(found) == catalog.count(Sighting)
    assert network.most_in_flight("/flickr/live") == 3


def test_files_their_publishers_mark_noai_are_recorded_not_stored(
    flickr_photos: tuple[FlickrConfig, list[Candidate]], settings: Settings, catalog: Catalog, tmp_path: Path, faults
) -> None:
    config, found = flickr_photos
    marked, paged = found[:2]
    faults(path_prefix=urlsplit(marked.url).path, kind="noai")
    faults(path_prefix=urlsplit(paged.url).path, kind="noai-page")
    counts, _ = store_from_flickr(config, settings, found[:6], catalog, tmp_path, concurrent_fetches=4)
    assert (counts["stored"], counts["fetch_failed"]) == (4, 2)
    with catalog.session() as session:
        failures = {row.source_id: row.reason for row in session.scalars(select(FetchFailure))}
        stored = set(session.scalars(select(Sighting.source_id)))
    assert set(failures) == {marked.source_id, paged.source_id} and not stored & set(failures)
    assert all("noai, noimageai" in reason and "not used for AI training" in reason for reason in failures.values())

    faults(path_prefix=urlsplit(marked.url).path, kind="noai")
    counts, _ = store_from_flickr(config, settings, [marked], catalog, tmp_path, honour_no_ai=False)
    assert counts["stored"] == 1, "an operator may decide to take marked files"
