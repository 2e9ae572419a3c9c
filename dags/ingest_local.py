"""
### ingest_local

Stores the photos of a local folder in the lake's raw zone and records a `local` sighting for each in
the catalog. By default it reads the real color photographs shipped inside the scikit-image, scikit-learn
and matplotlib packages; set the `folder` param (or `COLORFLOW_LOCAL_PHOTOS_DIR`) to read your own.

Storage is content-addressed, so a rerun stores nothing new. Emits the `raw_images` asset.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from colorflow_alerts import task_defaults
from colorflow_ingest import summarize


@dag(
    dag_id="ingest_local",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["colorflow", "ingest"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "folder": Param(None, type=["null", "string"], description="Folder to read (default: sample photos)."),
        "license": Param(
            None,
            type=["null", "string"],
            description="License of these photos, as an SPDX id (CC0-1.0, CC-BY-4.0...), Unsplash or"
            " public-domain-mark; empty: your own photos, which need none.",
        ),
        "batch_size": Param(50, type="integer", minimum=1, description="Photos per mapped task."),
    },
)
def ingest_local() -> None:
    @task
    def discover() -> list[list[str]]:
        from pipelines.sources.local import path_batches, photos_to_ingest

        params = get_current_context()["params"]
        return path_batches(photos_to_ingest(params["folder"]), params["batch_size"])

    @task
    def store(paths: list[str]) -> dict[str, int]:
        from pipelines.catalog import open_catalog
        from pipelines.sources.local import ingest_files
        from pipelines.storage import open_store

        context = get_current_context()
        return ingest_files(
            paths, open_store(), open_catalog(), run_id=context["run_id"], license=context["params"]["license"]
        )

    summarize(store.expand(paths=discover()))


ingest_local()
