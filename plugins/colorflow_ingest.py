"""Tasks every ingestion DAG shares: connecting to a source, storing a batch of its photos, and the
run's totals (which publish the `raw_images` asset).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from airflow.sdk import BaseHook, get_current_context, task

from colorflow_alerts import fail_fast
from colorflow_assets import RAW_IMAGES


def connect(source: str, connection_id: str) -> tuple[ModuleType, Any, Any]:
    """The connector module of `source`, with its configuration and HTTP client from the Airflow connection."""
    from pipelines.settings import get_settings

    connector = importlib.import_module(f"pipelines.sources.{source}")
    config, http = connector.connect(BaseHook.get_connection(connection_id), get_settings())
    return connector, config, http


@task(task_id="store")
def store_photos(source: str, batch: list[dict]) -> dict[str, int]:
    """Fetch and store one batch of discovered photos (a mapped task)."""
    from pipelines.sources.web import SourceUnavailable, store_batch

    context = get_current_context()
    with fail_fast(SourceUnavailable):
        connector, config, http = connect(source, context["params"]["connection_id"])
        return store_batch(batch, lambda candidate: connector.fetch(config, http, candidate), context["run_id"])


@task(outlets=[RAW_IMAGES])
def summarize(counts: list[dict[str, int]]) -> dict[str, int]:
    """The run's totals over all batches; emits `raw_images` so validation picks the new photos up."""
    from pipelines.summary import add_counts

    return add_counts(counts)


@task(task_id="ingest")
def ingest_dump(source: str) -> dict[str, int]:
    """Download one dataset dump, resumably and verified, and store the slice the run's params ask for.

    The download lives in a fixed work folder, so a retry after a kill resumes it where it stopped. A hostile
    or corrupt archive fails at once: retrying cannot make it safe.
    """
    from pipelines.archives import ArchiveError
    from pipelines.catalog import open_catalog
    from pipelines.settings import get_settings
    from pipelines.sources.dumps import work_dir
    from pipelines.sources.web import SourceUnavailable
    from pipelines.storage import open_store

    context = get_current_context()
    params = context["params"]
    with fail_fast(SourceUnavailable, ArchiveError):
        connector, config, http = connect(source, params["connection_id"])
        return connector.ingest(
            config,
            http,
            open_store(),
            open_catalog(),
            context["run_id"],
            work_dir(get_settings(), source),
            **connector.ingest_options(params),
        )
