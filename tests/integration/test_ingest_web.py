"""The web ingestion DAGs through the real Airflow scheduler against the sandbox: a backfill gives one
run per day over disjoint windows, rerunning the same days adds nothing, every source stores photos with
attribution, and a login wall fails fast with a clear message.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from sqlalchemy import func, select

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from pipelines.catalog import Image, Sighting, open_catalog
from pipelines.settings import Settings
from pipelines.sources.web import Window
from pipelines.storage import open_store
from sandbox.library import PhotoLibrary

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
FIRST_DAY, LAST_DAY = TODAY - timedelta(days=4), TODAY - timedelta(days=2)
UNSPLASH_QUERIES = ["cat", "flower", "coffee", "space", "portrait", "temple"]


def lake_snapshot(settings: Settings, source: str) -> dict[str, str]:
    """The raw objects of one source's photos with their checksums (other DAGs share the stack's lake)."""
    store = open_store(settings=settings)
    with open_catalog(settings).session() as session:
        keys = session.scalars(
            select(Image.raw_key).join(Sighting, Sighting.image_sha256 == Image.sha256).where(Sighting.source == source)
        )
        return {key: hashlib.sha256(store.get(key)).hexdigest() for key in keys}


def sightings_per_run(settings: Settings, source: str) -> dict[str, int]:
    with open_catalog(settings).session() as session:
        query = select(Sighting.run_id, func.count()).where(Sighting.source == source).group_by(Sighting.run_id)
        return dict(session.execute(query).tuples().all())


def unsplash_downloads(settings: Settings) -> dict[str, int]:
    return requests.get(f"{settings.sandbox_url}/unsplash/_admin/stats", timeout=10).json()["downloads"]


def ready(airflow: AirflowClient, dag_id: str) -> None:
    airflow.wait_for_dag(dag_id)
    airflow.unpause(dag_id)


@pytest.fixture(scope="module")
def unsplash_backfill(airflow: AirflowClient, stack_settings: StackSettings) -> list[dict]:
    ready(airflow, "ingest_unsplash")
    return airflow.wait_for_backfill(airflow.backfill("ingest_unsplash", FIRST_DAY, LAST_DAY), timeout_s=600)


def test_a_three_day_backfill_gives_three_runs_over_disjoint_days(
    unsplash_backfill: list[dict], stack_settings: StackSettings
) -> None:
    assert [run["state"] for run in unsplash_backfill] == ["success"] * 3
    windows = [
        (datetime.fromisoformat(run["data_interval_start"]), datetime.fromisoformat(run["data_interval_end"]))
        for run in unsplash_backfill
    ]
    assert windows == [(FIRST_DAY + timedelta(days=day), FIRST_DAY + timedelta(days=day + 1)) for day in range(3)]

    library = PhotoLibrary()
    stored = sightings_per_run(stack_settings, "unsplash")
    for run, (start, end) in zip(unsplash_backfill, windows, strict=True):
        window = Window(start, end)
        expected = {
            photo.number for query in UNSPLASH_QUERIES for photo in library.search(query) if photo.created_at in window
        }
        assert expected, "the sandbox should hold photos for every recent day"
        assert stored.get(run["dag_run_id"], 0) == len(expected), f"run {run['dag_run_id']} stored the wrong set"


def test_download_location_is_triggered_once_per_stored_photo(
    unsplash_backfill: list[dict], stack_settings: StackSettings
) -> None:
    with open_catalog(stack_settings).session() as session:
        stored_ids = set(session.scalars(select(Sighting.source_id).where(Sighting.source == "unsplash")))
    downloads = unsplash_downloads(stack_settings)
    assert stored_ids and {photo_id: downloads.get(photo_id) for photo_id in stored_ids} == dict.fromkeys(stored_ids, 1)


def test_backfilling_the_same_days_again_adds_nothing(
    unsplash_backfill: list[dict], airflow: AirflowClient, stack_settings: StackSettings
) -> None:
    before = lake_snapshot(stack_settings, "unsplash"), sightings_per_run(stack_settings, "unsplash")
    downloads_before = unsplash_downloads(stack_settings)
    runs = airflow.wait_for_backfill(airflow.backfill("ingest_unsplash", FIRST_DAY, LAST_DAY), timeout_s=600)
    assert [run["state"] for run in runs] == ["success"] * 3
    assert (lake_snapshot(stack_settings, "unsplash"), sightings_per_run(stack_settings, "unsplash")) == before
    assert unsplash_downloads(stack_settings) == downloads_before


def test_flickr_stores_openly_licensed_photos_with_owners(
    airflow: AirflowClient, stack_settings: StackSettings
) -> None:
    # Unpausing also lets the scheduler start the latest daily run, which may store the day's photos
    # first: the manual run must succeed and see them, and the source must hold them, stored once.
    ready(airflow, "ingest_flickr")
    run_id = airflow.trigger("ingest_flickr")
    assert airflow.wait_for_run("ingest_flickr", run_id, timeout_s=600) == "success"
    assert airflow.xcom("ingest_flickr", run_id, "summarize")["offered"] > 0
    with open_catalog(stack_settings).session() as session:
        rows = session.execute(select(Sighting.author, Sighting.license).where(Sighting.source == "flickr")).all()
    assert rows, "flickr stored nothing"
    assert all(author and license for author, license in rows)
    assert not any("All Rights Reserved" in license for _, license in rows)


def test_instagram_graph_then_browser_mode(airflow: AirflowClient, stack_settings: StackSettings) -> None:
    ready(airflow, "ingest_instagram")
    graph = airflow.trigger("ingest_instagram")
    assert airflow.wait_for_run("ingest_instagram", graph, timeout_s=600) == "success"
    assert airflow.xcom("ingest_instagram", graph, "summarize")["offered"] > 0
    assert sum(sightings_per_run(stack_settings, "instagram").values()) > 0

    browser = airflow.trigger("ingest_instagram", conf={"mode": "browser", "hashtags": ["cat"]})
    assert airflow.wait_for_run("ingest_instagram", browser, timeout_s=600) == "success"
    assert airflow.xcom("ingest_instagram", browser, "summarize")["offered"] > 0


def test_a_login_wall_fails_the_run_at_once_with_a_clear_message(
    airflow: AirflowClient, stack_settings: StackSettings
) -> None:
    ready(airflow, "ingest_instagram")
    base = stack_settings.sandbox_url
    airflow.put_connection(
        "instagram_logged_out",
        conn_type="http",
        host=f"{base}/instagram/graph/v21.0",
        password="sandbox-instagram-access-token",
        extra=json.dumps({"user_id": "17841400000000001", "web_url": f"{base}/instagram", "robots_permission": True}),
    )
    run_id = airflow.trigger(
        "ingest_instagram", conf={"mode": "browser", "connection_id": "instagram_logged_out", "hashtags": ["cat"]}
    )
    assert airflow.wait_for_run("ingest_instagram", run_id, timeout_s=300) == "failed"
    discover = next(
        task for task in airflow.task_instances("ingest_instagram", run_id) if task["task_id"] == "discover"
    )
    assert (discover["state"], discover["try_number"]) == ("failed", 1), "a login wall must not be retried"
    assert "login" in airflow.task_log("ingest_instagram", run_id, "discover").lower()
