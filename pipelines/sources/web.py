"""What every web connector shares: the candidate photos it discovers for a time window, and storing
them in the raw zone, many downloads in flight at once.

A connector implements `WebSource` (`pipelines.sources.contract`): `discover` gives candidates, `fetch` one
candidate's bytes. Discovery runs in one task and its candidates travel through XCom as small dicts (ids,
URLs, attribution); `store_candidates` runs in mapped tasks. A photo that fails alone (404, cut short, not
an image, marked noai) is recorded in the catalog as a fetch failure with its reason and skipped; a failure
that means the whole source is unusable (login wall, bad key, HTML instead of JSON) raises
`SourceUnavailable`, which fails the task at once instead of being retried forever.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from pipelines.catalog import Catalog, SightingRecord, open_catalog
from pipelines.fan_out import batched
from pipelines.http import HttpError
from pipelines.raw_zone import RawZoneWriter, StoredObject
from pipelines.storage import ObjectStore, open_store

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 500  # a log line per this many photos: progress without a line per photo


class SourceUnavailable(RuntimeError):
    """The source as a whole refuses us (credentials, login wall, changed format): retrying will not help."""


@dataclass(frozen=True)
class Window:
    """The half-open time range [start, end) one run collects, normally its data interval."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start} to {self.end}")

    def __contains__(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def halves(self) -> tuple[Window, Window]:
        middle = self.start + (self.end - self.start) / 2
        return Window(self.start, middle), Window(middle, self.end)


def run_window(interval_start: datetime | None, interval_end: datetime | None, run_after: datetime) -> Window:
    """The window a run collects: its data interval, or for a run without one (triggered by hand with no
    logical date) the last whole UTC day before it was triggered."""
    if interval_start is not None and interval_end is not None and interval_end > interval_start:
        return Window(interval_start, interval_end)
    day_start = run_after.replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(day_start - timedelta(days=1), day_start)


@dataclass(frozen=True)
class Candidate(SightingRecord):
    """A photo a source offers: its sighting (where its bytes are, who made it, under what license) plus
    what the connector needs later to fetch it (`extra`, such as Unsplash's download_location)."""

    extra: dict[str, Any] = field(default_factory=dict)

    def sighting(self) -> SightingRecord:
        return SightingRecord(**{column.name: getattr(self, column.name) for column in fields(SightingRecord)})

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> Candidate:
        return cls(**data)


def candidate_batches(candidates: list[Candidate], batch_size: int) -> list[list[dict[str, Any]]]:
    """Candidates split for mapped tasks, as XCom-friendly dicts."""
    return [[candidate.to_xcom() for candidate in batch] for batch in batched(candidates, batch_size)]


def unique(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates without repeats of the same source id, first occurrence kept, order kept."""
    seen: set[str] = set()
    kept = []
    for candidate in candidates:
        if candidate.source_id not in seen:
            seen.add(candidate.source_id)
            kept.append(candidate)
    return kept


def store_candidates(
    candidates: Iterable[Candidate],
    fetch: Callable[[Candidate], bytes],
    store: ObjectStore,
    catalog: Catalog,
    run_id: str,
    concurrent_fetches: int = 1,
) -> dict[str, int]:
    """Fetch and store each candidate not seen before, `concurrent_fetches` at a time; returns counts for the
    run's summary.

    Real image requests take 100-300 ms, most of it waiting, so a task keeps many in flight: worker threads
    fetch, hash and upload each photo (the HTTP client caps what one host sees at once), and this thread
    records the catalog rows in batches. A photo that fails alone is recorded as a fetch failure."""
    candidates = list(candidates)
    counts: Counter[str] = Counter(offered=len(candidates))
    with RawZoneWriter(store, catalog, run_id) as writer, ThreadPoolExecutor(max(1, concurrent_fetches)) as pool:
        # A withdrawn photo is refused before it is fetched: its sighting is in the catalog (the tombstone),
        # so it must not pass for one merely already known.
        allowed = [candidate for candidate in candidates if not writer.refuses(candidate.sighting())]
        wanted: list[Candidate] = []
        by_source: dict[str, list[Candidate]] = {}
        for candidate in allowed:
            by_source.setdefault(candidate.source, []).append(candidate)
        for source, offered in by_source.items():
            known = catalog.known_source_ids(source, [candidate.source_id for candidate in offered])
            counts["already_known"] += len(known)
            wanted += [candidate for candidate in offered if candidate.source_id not in known]

        def fetch_and_store(candidate: Candidate) -> StoredObject | None:
            return writer.write(fetch(candidate), candidate.sighting(), name_hint=candidate.url)

        pending = {pool.submit(fetch_and_store, candidate): candidate for candidate in wanted}
        for done, future in enumerate(as_completed(pending), start=1):
            candidate = pending[future]
            try:
                stored = future.result()
                if stored is not None:
                    writer.queue(stored)
            except HttpError as error:
                logger.warning("skipping %s %s: %s", candidate.source, candidate.source_id, error)
                catalog.add_fetch_failure(candidate.source, candidate.source_id, candidate.url, str(error), run_id)
                counts["fetch_failed"] += 1
            if done % PROGRESS_EVERY == 0:
                logger.info("%d of %d photos fetched", done, len(wanted))
    counts["stored"] = writer.counts["sightings_added"]
    counts["objects_written"] = writer.counts["objects_written"]
    if writer.counts["withdrawn"]:
        counts["withdrawn"] = writer.counts["withdrawn"]
    logger.info("stored %d of %d candidates (%s)", counts["stored"], len(candidates), dict(counts))
    return dict(counts)


def store_batch(
    batch: Iterable[dict[str, Any]], fetch: Callable[[Candidate], bytes], run_id: str, concurrent_fetches: int = 1
) -> dict[str, int]:
    """`store_candidates` for one mapped task's batch from XCom, into the configured lake and catalog."""
    candidates = [Candidate.from_xcom(item) for item in batch]
    return store_candidates(candidates, fetch, open_store(), open_catalog(), run_id, concurrent_fetches)
