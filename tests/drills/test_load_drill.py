"""Load: five thousand photos through the embedded stack in one backfill. The stack is one of its own, its
sandbox asked for a library of thousands of distinct photos; twenty-two days of `ingest_flickr` are backfilled
at once, as an operator catching up would (the scheduler runs the latest day as usual beside it). The drill
reports throughput and the peak memory of Airflow's task processes, and checks that every photo in the
window ended up in the catalog exactly once, each catalog image with its object in the lake and no object
without its row.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bench.load import TaskMemory, photos_in_window
from embedded import services
from embedded.airflow_api import AirflowClient
from pipelines.catalog import FetchFailure, Image, Sighting, open_catalog
from pipelines.settings import Settings
from pipelines.storage import open_store
from tests.drills.audit import audit_after_fault
from tests.stacks import private_stack_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow_drill]

LOAD_PHOTOS = 5000
DAYS = 22
# 1,600 variants of each of the 9 base photos: 14,400 in the library, spread over 30 days, a little over
# half under a license the default allow-list takes; twenty-two days of them are somewhat more than 5,000
# (twenty held 4,886 on some dates).
VARIANTS = 1600
TAG = "color"  # every library photo carries it
BATCH_SIZE = 200


@pytest.fixture(scope="module")
def load_stack() -> Iterator[tuple[Settings, AirflowClient]]:
    settings = private_stack_settings("colorflow-load-")
    saved = os.environ.get("COLORFLOW_SANDBOX_VARIANTS")
    os.environ["COLORFLOW_SANDBOX_VARIANTS"] = str(VARIANTS)  # read by the sandbox the stack starts
    try:
        services.up(settings)
        yield settings, AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    finally:
        services.down(settings)
        if saved is None:
            os.environ.pop("COLORFLOW_SANDBOX_VARIANTS", None)
        else:
            os.environ["COLORFLOW_SANDBOX_VARIANTS"] = saved
        shutil.rmtree(settings.home, ignore_errors=True)


@pytest.mark.timeout(2400)  # about nine minutes on two cores, with the stack's start
@pytest.mark.drill("load", f"{LOAD_PHOTOS:,} photos in one backfill of ingest_flickr ({DAYS} days)")
def test_five_thousand_photos_in_one_backfill(
    load_stack: tuple[Settings, AirflowClient], drill_report: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, airflow = load_stack
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # Unpausing makes the scheduler run yesterday itself (with default params): the backfill takes the
    # twenty-two days before it.
    first_day, last_day = today - timedelta(days=DAYS + 1), today - timedelta(days=2)
    monkeypatch.setenv("COLORFLOW_SANDBOX_VARIANTS", str(VARIANTS))
    expected = photos_in_window(first_day, last_day + timedelta(days=1), TAG)
    assert len(expected) >= LOAD_PHOTOS, f"the sandbox's window holds only {len(expected)} photos"

    airflow.wait_for_dag("ingest_flickr")
    airflow.unpause("ingest_flickr")
    conf = {"tags": [TAG], "limit": 1000, "batch_size": BATCH_SIZE}
    started = time.monotonic()
    with TaskMemory() as memory:
        backfill = airflow.backfill("ingest_flickr", first_day, last_day, conf=conf)
        runs = airflow.wait_for_backfill(backfill, timeout_s=3600)
    elapsed = time.monotonic() - started
    assert len(runs) == DAYS and {run["state"] for run in runs} == {"success"}

    with open_catalog(settings).session() as session:
        images = session.scalar(select(func.count()).select_from(Image))
        seen = list(session.scalars(select(Sighting.source_id).where(Sighting.source == "flickr")))
        failures = session.scalar(select(func.count()).select_from(FetchFailure))
    objects = sum(1 for _ in open_store(settings=settings).list("raw/"))
    missing = expected - set(seen)
    drill_report.update(
        outcome=f"{len(expected):,} photos in {elapsed:.0f} s ({len(expected) / elapsed:.1f}/s), {len(runs)} runs; "
        f"catalog images = lake objects = {objects:,}; peak memory of a task {memory.peak_task_bytes / 2**20:.0f} "
        f"MiB, of all tasks {memory.peak_all_tasks_bytes / 2**20:.0f} MiB ({memory.most_tasks_at_once} at once)",
        objects_lost=len(missing),
    )
    assert failures == 0 and not missing
    assert images == objects == len(seen) == len(set(seen)), "one image, one object and one sighting per photo"
    assert audit_after_fault(settings, drill_report) == []
