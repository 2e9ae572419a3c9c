"""What the drills check the stack with: its lake and catalog as they are (every object, every row), the
product's lake audit, and the processes running Airflow's tasks, which the crash drills kill.
"""

from __future__ import annotations

import hashlib
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select

from bench.load import TASK_TITLE
from embedded.airflow_api import AirflowClient
from embedded.polling import wait_until
from pipelines.catalog import Base, open_catalog
from pipelines.lake_audit import audit_lake
from pipelines.settings import Settings
from pipelines.stitch import latest_version
from pipelines.storage import open_store

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


def audit_after_fault(settings: Settings, drill_report: dict[str, Any]) -> list[str]:
    """Run the lake audit as on-call would after the fault (every object and shard hashed, nothing too young
    to count), put its outcome in the drill's row, and return what it found."""
    report = audit_lake(open_store(settings=settings), open_catalog(settings), checksums=True, grace=timedelta(0))
    findings = [f"{finding.kind.value}: {finding.subject} ({finding.detail})" for finding in report.findings]
    drill_report["audit"] = f"{len(findings)} finding(s)" if findings else "clean"
    return findings


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

    def running_task() -> tuple[dict[str, Any], psutil.Process] | None:
        running = [
            task
            for task in airflow.task_instances(dag_id, run_id)
            if task["task_id"] == task_id and task["state"] == "running"
        ]
        process = task_process(running[0]["id"]) if running else None
        return (running[0], process) if process is not None else None

    def moment_came() -> bool:
        if not process.is_running():
            raise TimeoutError(f"{dag_id}.{task_id} of {run_id} ended before the moment to kill it came")
        return ready is None or ready()

    started = time.monotonic()
    task, process = wait_until(
        running_task,
        timeout_s=timeout_s,
        interval_s=0.2,
        what=f"{dag_id}.{task_id} of {run_id} never ran long enough to be killed",
    )
    time.sleep(after_s)
    wait_until(
        moment_came,
        timeout_s=max(0.0, timeout_s - (time.monotonic() - started)),
        interval_s=0.02,
        what=f"the moment to kill {dag_id}.{task_id} of {run_id}",
    )
    process.send_signal(signal.SIGKILL)
    return task
