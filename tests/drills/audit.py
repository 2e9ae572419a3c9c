"""What the drills check the stack with: its lake and catalog as they are (every object, every row), and
the processes running Airflow's tasks, which the crash drills kill.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select

from embedded.airflow_api import AirflowClient
from pipelines.catalog import Base, DatasetVersion, Image, open_catalog
from pipelines.settings import Settings
from pipelines.shards import latest_version
from pipelines.storage import ObjectNotFound, open_store

# Airflow titles the process running a task instance's code `airflow worker -- <task instance id>`.
TASK_TITLE = "airflow worker -- "
# Written anew by every run on purpose (a run's own report); everything else must not change on a rerun.
PER_RUN_PREFIXES = ("reports/",)


def lake_objects(settings: Settings) -> dict[str, str]:
    """Every object in the lake with its sha256."""
    store = open_store(settings=settings)
    return {key: hashlib.sha256(store.get(key)).hexdigest() for key in store.list("")}


def catalog_rows(settings: Settings) -> dict[str, list[tuple]]:
    """Every row of every catalog table, sorted, as plain tuples."""
    catalog = open_catalog(settings)
    with catalog.session() as session:
        return {
            table.name: sorted((tuple(map(repr, row)) for row in session.execute(select(table))), key=str)
            for table in Base.metadata.sorted_tables
        }


def lake_problems(settings: Settings) -> list[str]:
    """What a reader could trip over: a raw object whose bytes are not the ones its name promises, a
    catalog image without its object, a published dataset naming a shard that is missing or altered."""
    store = open_store(settings=settings)
    problems = []
    raw = {key for key in store.list("raw/")}
    for key in raw:
        if hashlib.sha256(store.get(key)).hexdigest() != key.rsplit("/", 1)[-1].split(".")[0]:
            problems.append(f"{key}: content does not match its name (partial or corrupt object)")
    catalog = open_catalog(settings)
    with catalog.session() as session:
        for sha256, raw_key in session.execute(select(Image.sha256, Image.raw_key)):
            if raw_key not in raw:
                problems.append(f"image {sha256}: catalog row without its object {raw_key}")
        for version, manifest_key in session.execute(select(DatasetVersion.version, DatasetVersion.manifest_key)):
            try:
                manifest = json.loads(store.get(manifest_key))
            except ObjectNotFound:
                problems.append(f"dataset {version}: manifest {manifest_key} missing")
                continue
            for shard in manifest["shards"]:
                try:
                    if hashlib.sha256(store.get(shard["key"])).hexdigest() != shard["sha256"]:
                        problems.append(f"dataset {version}: shard {shard['key']} altered")
                except ObjectNotFound:
                    problems.append(f"dataset {version}: shard {shard['key']} missing")
    return problems


def dataset_version(airflow: AirflowClient, settings: Settings, photos: Path, build: dict[str, Any]) -> str:
    """The newest published dataset version; a drill run on its own, before any other drill built one, first
    ingests, validates and builds `photos` (build params `build`)."""
    catalog = open_catalog(settings)
    if latest_version(catalog) is None:
        assert airflow.run("ingest_local", {"folder": str(photos)})[1] == "success"
        assert airflow.run("validate_images")[1] == "success"
        assert airflow.run("build_dataset", build)[1] == "success"
    return latest_version(catalog)


def task_process(task_instance_id: str) -> psutil.Process | None:
    """The process running a task instance's code (its supervisor, the executor's worker, is titled
    differently)."""
    title = f"{TASK_TITLE}{task_instance_id}"
    for process in psutil.process_iter(["cmdline"]):
        if " ".join(process.info["cmdline"] or []).strip() == title:
            return process
    return None


def kill_task_while_running(
    airflow: AirflowClient,
    dag_id: str,
    run_id: str,
    task_id: str,
    after_s: float,
    ready: Any = None,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """SIGKILL the first try of `task_id` (any map index) `after_s` seconds into its work, or as soon as
    `ready()` says the moment has come; the task instance it killed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [
            task
            for task in airflow.task_instances(dag_id, run_id)
            if task["task_id"] == task_id and task["state"] == "running"
        ]
        process = task_process(running[0]["id"]) if running else None
        if process is not None:
            time.sleep(after_s)
            while ready is not None and not ready():
                if not process.is_running() or time.monotonic() > deadline:
                    raise TimeoutError(f"{dag_id}.{task_id} of {run_id} ended before the moment to kill it came")
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            return running[0]
        time.sleep(0.2)
    raise TimeoutError(f"{dag_id}.{task_id} of {run_id} never ran long enough to be killed")
