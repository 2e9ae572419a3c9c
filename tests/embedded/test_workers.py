"""The stack's Celery mode, as production runs Airflow: the pipeline's tasks go through Redis to Celery
workers, ingestion and validation spread over the `default` workers, training lands on the `gpu` worker,
and the dataset published is the one the LocalExecutor publishes from the same photos.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from embedded import workers
from embedded.airflow_api import AirflowClient
from tests.corpus import color_photo
from tests.stacks import running_stack

pytestmark = pytest.mark.integration

SEEDS = range(1200, 1224)
# Small groups, so that each stage is several tasks the workers share.
INGEST = {"license": "CC0 1.0", "batch_size": 4}
VALIDATE = {"group_images": 4}
BUILD = {"sources": ["local"], "load_size": 64, "shard_size": 8}
TRAIN_STEPS = 5


@dataclass(frozen=True)
class PipelineRun:
    version: str
    hosts: dict[str, set[str]]  # task id (dag.task) to the hosts its task instances ran on


def run_pipeline(airflow: AirflowClient, photos: Path) -> PipelineRun:
    """ingest_local, validate_images and build_dataset on the photos; each must succeed."""
    hosts: dict[str, set[str]] = {}
    for dag_id, conf in (("ingest_local", {**INGEST, "folder": str(photos)}), ("validate_images", VALIDATE)):
        run_id, state = airflow.run(dag_id, conf)
        assert state == "success", f"{dag_id} {run_id} ended {state}"
        for task in airflow.task_instances(dag_id, run_id):
            hosts.setdefault(f"{dag_id}.{task['task_id']}", set()).add(task["hostname"])
    run_id, state = airflow.run("build_dataset", BUILD)
    assert state == "success"
    version = airflow.xcom("build_dataset", run_id, "publish")["version"]
    return PipelineRun(version, hosts)


@pytest.fixture(scope="module")
def photos() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="colorflow-photos-"))
    folder.chmod(0o755)  # every process of the stack reads it
    for seed in SEEDS:
        (folder / f"photo-{seed}.jpg").write_bytes(color_photo(seed))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def local_version(photos: Path) -> str:
    """The dataset version the LocalExecutor publishes from the photos, on a stack of its own."""
    with running_stack("colorflow-local-", sandbox=False) as (_, airflow):
        return run_pipeline(airflow, photos).version


def test_the_pipeline_runs_on_the_celery_workers_and_publishes_what_the_local_executor_does(
    photos: Path, local_version: str
) -> None:
    with running_stack("colorflow-celery-", sandbox=False, executor="celery") as (settings, airflow):
        done = run_pipeline(airflow, photos)
        train_run, state = airflow.run(
            "train_colorizer", {"dataset_version": done.version, "steps": TRAIN_STEPS}, timeout_s=900
        )
        assert state == "success", airflow.task_log("train_colorizer", train_run, "train")
        training = {task["task_id"]: task for task in airflow.task_instances("train_colorizer", train_run)}

    default_workers = {worker.name for worker in workers.workers(settings) if worker.queue == workers.DEFAULT_QUEUE}
    assert default_workers == {"default-1", "default-2"}
    spread = set().union(*done.hosts.values())
    assert spread == default_workers, f"ingestion and validation ran on {done.hosts}"
    for task in ("ingest_local.store", "validate_images.measure"):
        assert done.hosts[task] <= default_workers
    assert (training["train"]["hostname"], training["train"]["queue"]) == ("gpu-1", workers.GPU_QUEUE)
    assert training["evaluate_and_promote"]["hostname"] in default_workers
    assert done.version == local_version
