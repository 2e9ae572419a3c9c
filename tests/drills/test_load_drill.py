"""Load: five thousand photos through the embedded stack in one backfill. The stack is one of its own, its
sandbox asked for a library of thousands of distinct photos; twenty days of `ingest_flickr` are backfilled
at once, as an operator catching up would (the scheduler runs the latest day as usual beside it). The drill
reports throughput and the peak memory of Airflow's task processes, and checks that every photo in the
window ended up in the catalog exactly once, each catalog image with its object in the lake and no object
without its row.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psutil
import pytest
from sqlalchemy import func, select

from embedded import services
from embedded.airflow_api import AirflowClient
from pipelines.catalog import FetchFailure, Image, Sighting, open_catalog
from pipelines.licenses import DEFAULT_ALLOWED, from_url
from pipelines.settings import Settings
from pipelines.sources.flickr import SIZE_LADDER
from pipelines.storage import open_store
from sandbox.flickr import LICENSES, URL_EXTRAS, FlickrCatalogue
from sandbox.library import PhotoLibrary
from tests.drills.audit import TASK_TITLE, audit_after_fault
from tests.stacks import private_stack_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow_drill]

LOAD_PHOTOS = 5000
DAYS = 20
# 1,600 variants of each of the 9 base photos: 14,400 in the library, spread over 30 days, a little over
# half under a license the default allow-list takes; twenty days of them are somewhat more than 5,000.
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


@dataclass
class TaskMemory:
    """Samples the resident memory of every Airflow task process while the load runs."""

    peak_task_bytes: int = 0
    peak_all_tasks_bytes: int = 0
    most_tasks_at_once: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            sizes = []
            for process in psutil.process_iter(["cmdline", "memory_info"]):
                if " ".join(process.info["cmdline"] or []).startswith(TASK_TITLE) and process.info["memory_info"]:
                    sizes.append(process.info["memory_info"].rss)
            self.peak_task_bytes = max([self.peak_task_bytes, *sizes])
            self.peak_all_tasks_bytes = max(self.peak_all_tasks_bytes, sum(sizes))
            self.most_tasks_at_once = max(self.most_tasks_at_once, len(sizes))

    def __enter__(self) -> TaskMemory:
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()


def photos_in_window(start: datetime, end: datetime) -> set[str]:
    """The Flickr ids of the photos the backfill should collect: tagged, under an allowed license, in time,
    with a size the search lists."""
    catalogue = FlickrCatalogue(PhotoLibrary())
    return {
        photo.id
        for photo in catalogue.photos
        if start.timestamp() <= photo.uploaded_at < end.timestamp()
        and TAG in photo.tags
        and from_url(LICENSES[photo.license][1]) in DEFAULT_ALLOWED
        and any(catalogue.has_size(photo, URL_EXTRAS[size]) for size in SIZE_LADDER)
    }


@pytest.mark.timeout(2400)  # about nine minutes on two cores, with the stack's start
@pytest.mark.drill("load", f"{LOAD_PHOTOS:,} photos in one backfill of ingest_flickr ({DAYS} days)")
def test_five_thousand_photos_in_one_backfill(
    load_stack: tuple[Settings, AirflowClient], drill_report: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, airflow = load_stack
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # Unpausing makes the scheduler run yesterday itself (with default params): the backfill takes the
    # twenty days before it.
    first_day, last_day = today - timedelta(days=DAYS + 1), today - timedelta(days=2)
    monkeypatch.setenv("COLORFLOW_SANDBOX_VARIANTS", str(VARIANTS))
    expected = photos_in_window(first_day, last_day + timedelta(days=1))
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
