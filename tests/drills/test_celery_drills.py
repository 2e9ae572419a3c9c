"""Faults of the production executor, on the stack's Celery mode: a worker host dies in the middle of an
ingestion task, the broker restarts during a run, and the GPU worker is missing when training is due.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from sqlalchemy import func, select

from embedded import services, workers
from embedded.airflow_api import AirflowClient
from embedded.polling import wait_until
from embedded.settings import StackSettings
from embedded.supervisor import Service, Supervisor
from pipelines.catalog import Image, Sighting, open_catalog
from pipelines.storage import open_store
from tests.corpus import color_photo
from tests.drills.audit import audit_after_fault
from tests.drills.test_crash_drills import textured_photo
from tests.stacks import running_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow_drill]

DEADLINE_HOURS = 0.02  # 72 seconds: the overdue alert of a training that no worker takes


@dataclass(frozen=True)
class CeleryStack:
    settings: StackSettings
    airflow: AirflowClient
    keeper: Supervisor

    def service(self, name: str) -> Service:
        return next(service for service in services.stack_services(self.settings) if service.name == name)

    def photos(self, name: str, photos: dict[int, bytes]) -> dict[str, Path]:
        """Photos in a folder of the stack's home (every worker reads it), by sha256."""
        folder = self.settings.home / f"photos-{name}"
        folder.mkdir(mode=0o755)
        found = {}
        for seed, data in photos.items():
            (folder / f"{name}-{seed}.jpg").write_bytes(data)
            found[hashlib.sha256(data).hexdigest()] = folder
        return found

    def lost(self, photos: dict[str, Path]) -> list[str]:
        """The photos not in both the catalog and the lake."""
        store = open_store(settings=self.settings)
        with open_catalog(self.settings).session() as session:
            stored = set(session.scalars(select(Image.sha256).where(Image.sha256.in_(list(photos)))))
        return [sha for sha in photos if sha not in stored or not store.exists(f"raw/{sha[:2]}/{sha}.jpg")]

    def sightings(self, run_id: str) -> int:
        with open_catalog(self.settings).session() as session:
            return session.scalar(select(func.count()).select_from(Sighting).where(Sighting.run_id == run_id))


@pytest.fixture(scope="module")
def celery_stack() -> Iterator[CeleryStack]:
    with running_stack(
        "colorflow-celery-drills-", sandbox=False, executor="celery", train_deadline_hours=DEADLINE_HOURS
    ) as (settings, airflow):
        yield CeleryStack(settings, airflow, services.supervisor(settings))


def running_tasks(airflow: AirflowClient, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    return [
        task
        for task in airflow.task_instances(dag_id, run_id)
        if task["task_id"] == task_id and task["state"] == "running"
    ]


@pytest.mark.drill("celery: worker lost", "SIGKILL of a default worker's whole process tree mid ingest_local.store")
def test_a_worker_killed_mid_ingestion_hands_the_task_to_the_other_worker(
    celery_stack: CeleryStack, drill_report: dict
) -> None:
    stack, airflow = celery_stack, celery_stack.airflow
    # Enough photos that storing them takes seconds here, so the kill lands while the task is at work.
    photos = stack.photos("killed-worker", {seed: textured_photo(seed, (800, 600)) for seed in range(9300, 9540)})
    lake = Path(stack.settings.lake_url.removeprefix("file://"))
    run_id = airflow.start("ingest_local", {"folder": str(next(iter(photos.values()))), "batch_size": 1000})
    victim = wait_until(
        lambda: running_tasks(airflow, "ingest_local", run_id, "store"),
        timeout_s=300,
        what=lambda: f"a running store task: {airflow.task_instances('ingest_local', run_id)}",
    )[0]
    wait_until(
        lambda: any((lake / "raw" / sha[:2] / f"{sha}.jpg").exists() for sha in photos),
        timeout_s=300,
        interval_s=0.05,
        what=f"a first photo stored under {lake}",
    )

    worker = stack.keeper.running_process(f"{workers.SERVICE_PREFIX}{victim['hostname']}")
    # The host is gone: the worker and every process under it at once, a task's own session included.
    tree = [worker, *worker.children(recursive=True)]
    os.killpg(os.getpgid(worker.pid), signal.SIGKILL)
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()

    assert airflow.wait_for_run("ingest_local", run_id, timeout_s=600) == "success"
    store = next(task for task in airflow.task_instances("ingest_local", run_id) if task["task_id"] == "store")
    assert store["try_number"] == 2 and store["hostname"] not in ("", victim["hostname"])
    lost = stack.lost(photos)
    drill_report.update(
        outcome=f"killed on {victim['hostname']}, retried on {store['hostname']}; {len(photos)} photos stored once",
        objects_lost=len(lost),
    )
    assert lost == [] and stack.sightings(run_id) == len(photos)
    assert audit_after_fault(stack.settings, drill_report) == []
    stack.keeper.start(stack.service(f"{workers.SERVICE_PREFIX}{victim['hostname']}"))


@pytest.mark.drill("celery: broker restart", "Redis stopped for 10 s and started again during an ingest_local run")
def test_a_run_completes_across_a_broker_restart(celery_stack: CeleryStack, drill_report: dict) -> None:
    stack, airflow = celery_stack, celery_stack.airflow
    photos = stack.photos("broker-restart", {seed: color_photo(seed) for seed in range(1300, 1340)})
    run_id = airflow.start("ingest_local", {"folder": str(next(iter(photos.values()))), "batch_size": 2})

    def some_stored() -> bool:
        tasks = airflow.task_instances("ingest_local", run_id)
        return any(task["task_id"] == "store" and task["state"] == "success" for task in tasks)

    wait_until(some_stored, timeout_s=300)
    stack.keeper.stop("redis")
    time.sleep(10)
    stack.keeper.start(stack.service("redis"))

    assert airflow.wait_for_run("ingest_local", run_id, timeout_s=600) == "success"
    retried = sum(task["try_number"] > 1 for task in airflow.task_instances("ingest_local", run_id))
    lost = stack.lost(photos)
    drill_report.update(
        outcome=f"run succeeded; {retried} task(s) queued during the outage were retried", objects_lost=len(lost)
    )
    assert lost == [] and stack.sightings(run_id) == len(photos)
    assert audit_after_fault(stack.settings, drill_report) == []


@pytest.mark.drill("celery: no GPU worker", "train_colorizer due while the gpu worker is down")
def test_training_waits_for_a_gpu_worker_and_its_deadline_alert_fires(
    celery_stack: CeleryStack, drill_report: dict
) -> None:
    stack, airflow = celery_stack, celery_stack.airflow
    photos = stack.photos("training", {seed: color_photo(seed) for seed in range(1400, 1424)})
    assert airflow.run("ingest_local", {"folder": str(next(iter(photos.values())))})[1] == "success"
    assert airflow.run("validate_images")[1] == "success"
    build, state = airflow.run("build_dataset", {"sources": ["local"], "load_size": 64, "shard_size": 16})
    assert state == "success"
    version = airflow.xcom("build_dataset", build, "publish")["version"]
    gpu_worker = f"{workers.SERVICE_PREFIX}gpu-1"
    stack.keeper.stop(gpu_worker)
    started = time.monotonic()

    run_id = airflow.start("train_colorizer", {"dataset_version": version, "steps": 5})

    triggerer_log = stack.keeper.log_file("airflow-triggerer")
    alert = f"COLORFLOW RUN OVERDUE: dag=train_colorizer run={run_id}"
    wait_until(lambda: alert in triggerer_log.read_text(), timeout_s=600, interval_s=2)
    overdue_after = time.monotonic() - started
    train = next(task for task in airflow.task_instances("train_colorizer", run_id) if task["task_id"] == "train")
    assert (train["state"], train["hostname"]) == ("queued", "")
    assert train["queue"] == workers.GPU_QUEUE
    stack.keeper.start(stack.service(gpu_worker))
    assert airflow.wait_for_run("train_colorizer", run_id, timeout_s=600) == "success"
    train = next(task for task in airflow.task_instances("train_colorizer", run_id) if task["task_id"] == "train")
    assert train["hostname"] == "gpu-1"
    drill_report.update(
        outcome=f"train stayed queued on `gpu`; overdue alert after {overdue_after:.0f} s (deadline"
        f" {DEADLINE_HOURS * 3600:.0f} s); ran on gpu-1 once it was back",
        objects_lost=0,
    )
