"""Tasks every ingestion DAG shares: discovering a web source's photos for the run's window, storing a batch
of them, planning a slice of a dataset dump and storing its parts, and the run's totals (which publish the
`raw_images` asset).

Each task names its source; the source itself is found through `pipelines.sources.contract`, whose
Protocols say what every source provides.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook, get_current_context, task

from colorflow_alerts import fail_fast
from colorflow_assets import RAW_IMAGES
from colorflow_context import data_window


def _client(source: Any, connection_id: str) -> Any:
    """The source's client for an Airflow connection, with the process's settings."""
    from pipelines.settings import get_settings

    return source.connect(BaseHook.get_connection(connection_id), get_settings())


@task(task_id="discover")
def discover_photos(source: str) -> list[list[dict]]:
    """The photos a web source offers for the run's window, as batches for the mapped `store` tasks."""
    from pipelines.sources.contract import web_source
    from pipelines.sources.web import SourceUnavailable, candidate_batches

    context = get_current_context()
    params = context["params"]
    with fail_fast(SourceUnavailable):
        connector = web_source(source)
        found = connector.discover(_client(connector, params["connection_id"]), data_window(context), params)
        return candidate_batches(found, params["batch_size"])


@task(task_id="store")
def store_photos(source: str, batch: list[dict]) -> dict[str, int]:
    """Fetch and store one batch of discovered photos (a mapped task)."""
    from pipelines.sources.contract import web_source
    from pipelines.sources.web import SourceUnavailable, store_batch

    context = get_current_context()
    with fail_fast(SourceUnavailable):
        connector = web_source(source)
        client = _client(connector, context["params"]["connection_id"])
        return store_batch(
            batch,
            lambda candidate: connector.fetch(client, candidate),
            context["run_id"],
            client.limits.concurrent_fetches,
        )


@task(outlets=[RAW_IMAGES])
def summarize(counts: list[dict[str, int]]) -> dict[str, int]:
    """The run's totals over all batches; emits `raw_images` so validation picks the new photos up."""
    from pipelines.fan_out import add_counts

    return add_counts(counts)


@task(task_id="plan")
def plan_dump(source: str) -> list[dict[str, Any]]:
    """Download one dataset dump, resumably and verified, and divide the slice the run's params ask for into
    parts for the mapped `ingest` tasks.

    The download lives in a fixed work folder, so a retry after a kill resumes it where it stopped. A hostile
    or corrupt archive fails at once: retrying cannot make it safe.
    """
    from pipelines.archives import ArchiveError
    from pipelines.settings import get_settings
    from pipelines.sources.contract import dump_source
    from pipelines.sources.dumps import work_dir
    from pipelines.sources.web import SourceUnavailable

    params = get_current_context()["params"]
    with fail_fast(SourceUnavailable, ArchiveError):
        dump = dump_source(source)
        client = _client(dump, params["connection_id"])
        return [part.as_dict() for part in dump.plan(client, work_dir(get_settings(), source), params)]


@task(task_id="ingest")
def ingest_part(source: str, part: dict[str, Any]) -> dict[str, int]:
    """Store one planned part of a dump (a mapped task); a corrupt inner archive fails this part alone."""
    from pipelines.archives import ArchiveError
    from pipelines.catalog import open_catalog
    from pipelines.settings import get_settings
    from pipelines.sources.contract import dump_source
    from pipelines.sources.dumps import DumpPart, work_dir
    from pipelines.sources.web import SourceUnavailable
    from pipelines.storage import open_store

    context = get_current_context()
    params = context["params"]
    with fail_fast(SourceUnavailable, ArchiveError):
        dump = dump_source(source)
        return dump.ingest_part(
            _client(dump, params["connection_id"]),
            open_store(),
            open_catalog(),
            context["run_id"],
            work_dir(get_settings(), source),
            params,
            DumpPart(**part),
        )
