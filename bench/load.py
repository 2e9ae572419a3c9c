"""What load runs through the embedded stack share (the load drill, `bench/ingest.py`): the peak memory of
Airflow's task processes while a run goes on, and the Flickr photos a backfill of a window should collect."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

import psutil

from pipelines.licenses import DEFAULT_ALLOWED, from_url
from pipelines.sources.flickr import SIZE_LADDER
from sandbox.flickr import LICENSES, URL_EXTRAS, FlickrCatalogue
from sandbox.library import PhotoLibrary

# Airflow titles the process running a task instance's code `airflow worker -- <task instance id>`.
TASK_TITLE = "airflow worker -- "


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


def photos_in_window(start: datetime, end: datetime, tag: str) -> set[str]:
    """The Flickr ids of the photos the backfill should collect: tagged, under an allowed license, in time,
    with a size the search lists."""
    catalogue = FlickrCatalogue(PhotoLibrary())
    return {
        photo.id
        for photo in catalogue.photos
        if start.timestamp() <= photo.uploaded_at < end.timestamp()
        and tag in photo.tags
        and from_url(LICENSES[photo.license][1]) in DEFAULT_ALLOWED
        and any(catalogue.has_size(photo, URL_EXTRAS[size]) for size in SIZE_LADDER)
    }
