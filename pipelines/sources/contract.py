"""What every source implements, so the ingestion tasks drive any of them the same way.

Two kinds of source, one Protocol each:

- a `WebSource` is searched for a time window and fetched photo by photo (Unsplash, Flickr, Instagram):
  `discover` runs in one task, and mapped tasks `fetch` and store its candidates;
- a `DumpSource` is a published dataset taken a slice at a time (ImageNet, COCO, Kaggle): `plan` downloads
  it resumably into a work folder, verifies it and divides the slice the run's params ask for into parts,
  and mapped tasks `ingest_part` each store one.

Both start from `connect`, which turns an Airflow connection (duck-typed: Airflow is not imported here) and
the settings into a `SourceClient`. `pipelines/sources/README.md` lists the steps to add a source.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipelines.catalog import Catalog
from pipelines.fan_out import DUMP_PARTS
from pipelines.http import HttpClient
from pipelines.settings import Settings
from pipelines.sources.dumps import DumpPart
from pipelines.sources.web import Candidate, Window
from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)


class ConnectionLike(Protocol):
    """The fields of an Airflow Connection a source reads."""

    host: str | None
    port: int | None
    login: str | None
    password: str | None
    extra_dejson: dict[str, Any]


@dataclass(frozen=True)
class FetchLimits:
    """How hard a task may pull on a source's image hosts, from the connection's extra: `concurrent_fetches`
    (downloads in flight in one task), `max_per_host` (in flight to one host) and `honour_no_ai` (skip files
    marked noai / noimageai). The defaults are gentle; a CDN takes far more."""

    concurrent_fetches: int = 8
    max_per_host: int = 8
    honour_no_ai: bool = True

    @classmethod
    def from_connection(cls, connection: ConnectionLike) -> FetchLimits:
        extra = getattr(connection, "extra_dejson", None) or {}
        limits = cls(
            concurrent_fetches=int(extra.get("concurrent_fetches", cls.concurrent_fetches)),
            max_per_host=int(extra.get("max_per_host", cls.max_per_host)),
            honour_no_ai=bool(extra.get("honour_no_ai", cls.honour_no_ai)),
        )
        if limits.concurrent_fetches < 1 or limits.max_per_host < 1:
            raise ValueError("concurrent_fetches and max_per_host must be at least 1")
        return limits


@dataclass(frozen=True)
class SourceClient:
    """A source's configuration, read from its connection, and the HTTP client that honours its rules."""

    config: Any
    http: HttpClient
    limits: FetchLimits = FetchLimits()


@runtime_checkable
class WebSource(Protocol):
    """A service searched for a time window and fetched photo by photo."""

    name: str

    def connect(self, connection: ConnectionLike, settings: Settings) -> SourceClient:
        """The client for a connection; raises ValueError naming what the connection lacks."""
        ...

    def discover(self, client: SourceClient, window: Window, params: Mapping[str, Any]) -> list[Candidate]:
        """The photos offered in `window`, as the run's params (queries, limits, mode) ask."""
        ...

    def fetch(self, client: SourceClient, candidate: Candidate) -> bytes:
        """One candidate's bytes; `HttpError` for a photo that fails alone, `SourceUnavailable` for the source."""
        ...


@runtime_checkable
class DumpSource(Protocol):
    """A published dataset, downloaded resumably and stored a slice at a time."""

    name: str

    def connect(self, connection: ConnectionLike, settings: Settings) -> SourceClient:
        """The client for a connection; raises ValueError naming what the connection lacks."""
        ...

    def plan(self, client: SourceClient, work_area: Path, params: Mapping[str, Any]) -> list[DumpPart]:
        """Download into `work_area` (a retry resumes there) and verify what the run reads, then divide the
        slice `params` asks for into parts for mapped tasks."""
        ...

    def ingest_part(
        self,
        client: SourceClient,
        store: ObjectStore,
        catalog: Catalog,
        run_id: str,
        work_area: Path,
        params: Mapping[str, Any],
        part: DumpPart,
    ) -> dict[str, int]:
        """Store one planned part from the verified downloads in `work_area`; counts."""
        ...


@dataclass(frozen=True)
class Connection:
    """How every source connects: read its configuration from the connection, make the client that honours it."""

    read_config: Callable[[ConnectionLike], Any]
    make_client: Callable[[Any, Settings], HttpClient]

    def connect(self, connection: ConnectionLike, settings: Settings) -> SourceClient:
        config, limits = self.read_config(connection), FetchLimits.from_connection(connection)
        http = self.make_client(config, settings)
        http.limit_fetching(limits.max_per_host, limits.honour_no_ai)
        return SourceClient(config, http, limits)


@dataclass(frozen=True)
class WebService(Connection):
    """A `WebSource` made of a connector module's functions."""

    name: str
    discover_for_run: Callable[[Any, HttpClient, Window, Mapping[str, Any]], list[Candidate]]
    fetch_photo: Callable[[Any, HttpClient, Candidate], bytes]

    def discover(self, client: SourceClient, window: Window, params: Mapping[str, Any]) -> list[Candidate]:
        return self.discover_for_run(client.config, client.http, window, params)

    def fetch(self, client: SourceClient, candidate: Candidate) -> bytes:
        return self.fetch_photo(client.config, client.http, candidate)


@dataclass(frozen=True)
class Dump(Connection):
    """A `DumpSource` made of a connector module's functions: `plan_slice` and `store_part` take the keyword
    arguments `options` reads from the run's params (`plan_slice` also `parts`)."""

    name: str
    plan_slice: Callable[..., tuple[list[DumpPart], Counter[str]]]
    store_part: Callable[..., dict[str, int]]
    options: Callable[[Mapping[str, Any]], dict[str, Any]]

    def plan(self, client: SourceClient, work_area: Path, params: Mapping[str, Any]) -> list[DumpPart]:
        parts = int(params.get("parts") or DUMP_PARTS)
        planned, downloads = self.plan_slice(client.config, client.http, work_area, parts=parts, **self.options(params))
        logger.info("%s: %d parts planned; downloads: %s", self.name, len(planned), dict(downloads))
        return planned

    def ingest_part(
        self,
        client: SourceClient,
        store: ObjectStore,
        catalog: Catalog,
        run_id: str,
        work_area: Path,
        params: Mapping[str, Any],
        part: DumpPart,
    ) -> dict[str, int]:
        return self.store_part(
            client.config, client.http, store, catalog, run_id, work_area, part, **self.options(params)
        )


def web_source(name: str) -> WebSource:
    """The web source called `name`."""
    from pipelines.sources import flickr, instagram, unsplash

    return _by_name(name, (unsplash.CONNECTOR, flickr.CONNECTOR, instagram.CONNECTOR))


def dump_source(name: str) -> DumpSource:
    """The dataset dump called `name`."""
    from pipelines.sources import coco, imagenet, kaggle

    return _by_name(name, (imagenet.CONNECTOR, coco.CONNECTOR, kaggle.CONNECTOR))


def _by_name(name: str, sources: tuple[Any, ...]) -> Any:
    found = {source.name: source for source in sources}
    if name not in found:
        raise ValueError(f"no source called {name!r}: there are {', '.join(sorted(found))}")
    return found[name]
