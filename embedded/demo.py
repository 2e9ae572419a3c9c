"""The demo: run Colorflow's pipeline through the embedded Airflow, then say what it did and where to look."""

from __future__ import annotations

import logging

from embedded.airflow_api import AirflowClient
from pipelines.catalog import Image, Sighting, open_catalog
from pipelines.settings import Settings
from pipelines.storage import open_store

logger = logging.getLogger(__name__)

DEMO_DAGS = ("ingest_local",)


def lake_counts(settings: Settings) -> dict[str, int]:
    store = open_store(settings=settings)
    catalog = open_catalog(settings)
    return {
        "raw objects": sum(1 for _ in store.list("raw/")),
        "images": catalog.count(Image),
        "sightings": catalog.count(Sighting),
    }


def run_demo(settings: Settings) -> int:
    """Trigger each demo DAG in turn and wait for it; returns a process exit code."""
    client = AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    before = lake_counts(settings)
    outcomes = {}
    for dag_id in DEMO_DAGS:
        client.wait_for_dag(dag_id)
        client.unpause(dag_id)
        run_id = client.trigger(dag_id)
        print(f"running {dag_id} ({run_id}) ...", flush=True)
        outcomes[dag_id] = (run_id, client.wait_for_run(dag_id, run_id))
    after = lake_counts(settings)
    print(summary(settings, outcomes, before, after))
    return 0 if all(state == "success" for _, state in outcomes.values()) else 1


def summary(
    settings: Settings, outcomes: dict[str, tuple[str, str]], before: dict[str, int], after: dict[str, int]
) -> str:
    lines = ["", "Colorflow demo", "=============="]
    lines += [f"  {dag_id:<16} {state:<8} {run_id}" for dag_id, (run_id, state) in outcomes.items()]
    lines += ["", "Lake and catalog (now, and added by this demo):"]
    lines += [f"  {name:<12} {after[name]:>6}   (+{after[name] - before[name]})" for name in after]
    per_source = open_catalog(settings).count_by_source()
    lines += [f"  sightings from {source}: {count}" for source, count in per_source.items()]
    lines += [
        "",
        f"  lake         {settings.lake_url}",
        f"  catalog      {settings.catalog_url}",
        f"  Airflow UI   {settings.airflow_url}   login {settings.airflow_username} / {settings.airflow_password}",
        f"  MLflow UI    {settings.mlflow_tracking_uri}",
        f"  logs         {settings.logs_dir}",
        "",
        "The services keep running; stop them with `make down`.",
    ]
    return "\n".join(lines)
