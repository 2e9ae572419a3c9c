"""Crash safety: Airflow tasks killed with SIGKILL in the middle of their work (an upload, a shard write,
catalog writes, training) leave nothing partial where a reader could see it, and their retry completes.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image as PILImage
from sqlalchemy import func, select

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from models.launch import CPU_PROFILE
from models.tracking import EXPERIMENT, run_tagged
from models.train import checkpoint_prefix, latest_checkpoint, load_checkpoint
from pipelines.catalog import DatasetMember, Image, QualityResult, SightingRecord, open_catalog
from pipelines.quality.run_files import facts_key
from pipelines.raw_zone import ingest_photo
from pipelines.settings import Settings
from pipelines.stitch import latest_version, load_manifest
from pipelines.storage import open_store
from tests.drills.audit import audit_after_fault, dataset_version, kill_task_while_running

pytestmark = [pytest.mark.integration]

PHOTOS = 60
VALIDATION_PHOTOS = 40


def textured_photo(seed: int, size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A colorful photo with fine grain, so each one is a sizeable upload (about 1 MB)."""
    rng = np.random.default_rng(seed)
    base = PILImage.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)).resize(
        size, PILImage.Resampling.BICUBIC
    )
    grain = rng.normal(0, 12, size=(size[1], size[0], 3))
    pixels = np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def staging_busy(settings: Settings) -> bool:
    """A file store write is in flight: its bytes are being staged, not yet published."""
    staging = Path(settings.lake_url.removeprefix("file://")) / ".staging"
    return staging.is_dir() and any(staging.iterdir())


def final_try(airflow: AirflowClient, dag_id: str, run_id: str, killed: dict[str, Any]) -> dict[str, Any]:
    return next(
        task
        for task in airflow.task_instances(dag_id, run_id)
        if task["task_id"] == killed["task_id"] and task["map_index"] == killed["map_index"]
    )


@pytest.fixture(scope="module")
def drill_photos(photo_folder: Path) -> dict[str, Path]:
    """The drill's photos by sha256: new to the stack, so that every one of them has to be uploaded."""
    photos = {}
    for seed in range(9000, 9000 + PHOTOS):
        data = textured_photo(seed)
        path = photo_folder / f"drill-{seed}.jpg"
        path.write_bytes(data)
        photos[hashlib.sha256(data).hexdigest()] = path
    return photos


@pytest.mark.drill("crash: upload", "SIGKILL of ingest_local.store while an object is being written")
def test_a_task_killed_mid_upload_leaves_no_partial_object_and_its_retry_stores_everything(
    airflow: AirflowClient,
    stack_settings: StackSettings,
    photo_folder: Path,
    drill_photos: dict[str, Path],
    drill_report: dict,
) -> None:
    run_id = airflow.start("ingest_local", {"folder": str(photo_folder), "batch_size": 1000})

    lake = Path(stack_settings.lake_url.removeprefix("file://"))

    def some_stored() -> bool:
        return any((lake / "raw" / sha[:2] / f"{sha}.jpg").exists() for sha in drill_photos)

    killed = kill_task_while_running(airflow, "ingest_local", run_id, "store", after_s=0, ready=some_stored)

    assert airflow.wait_for_run("ingest_local", run_id, timeout_s=600) == "success"
    assert final_try(airflow, "ingest_local", run_id, killed)["try_number"] == 2, "the killed try was retried"
    assert audit_after_fault(stack_settings, drill_report) == []
    store = open_store(settings=stack_settings)
    with open_catalog(stack_settings).session() as session:
        stored = set(session.scalars(select(Image.sha256).where(Image.sha256.in_(list(drill_photos)))))
    lost = [sha for sha in drill_photos if sha not in stored or not store.exists(f"raw/{sha[:2]}/{sha}.jpg")]
    drill_report.update(
        outcome=f"retry stored all {len(drill_photos)} photos, no partial object, nothing left staged",
        objects_lost=len(lost),
    )
    assert lost == []
    assert not staging_busy(stack_settings), "the retry removed what the killed try left staged"


@pytest.mark.drill(
    "crash: validation",
    "SIGKILL of a validate_images.measure task mid-group, then of judge while verdicts are written",
)
def test_tasks_killed_mid_validation_redo_only_their_own_work_and_leave_whole_verdicts(
    airflow: AirflowClient, stack_settings: StackSettings, drill_report: dict
) -> None:
    catalog = open_catalog(stack_settings)
    store = open_store(settings=stack_settings)
    # Whatever is pending (the upload drill's photos) is judged first, by a run of its own, and this drill's
    # photos go straight into the lake, with no asset event to start another: only this drill's run, in
    # groups of a few, judges them.
    assert airflow.run("validate_images")[1] == "success"
    airflow.wait_until_idle("validate_images")
    photos = [
        ingest_photo(
            store,
            catalog,
            textured_photo(seed, size=(800, 600)),
            SightingRecord("local", f"validation-drill-{seed}", f"file:///validation-drill-{seed}.jpg"),
            run_id="validation-drill",
        ).sha256
        for seed in range(9500, 9500 + VALIDATION_PHOTOS)
    ]

    def some_judged() -> bool:
        with catalog.session() as session:
            judged = select(func.count()).select_from(Image).where(Image.sha256.in_(photos))
            return session.scalar(judged.where(Image.status != "pending")) > 0

    run_id = airflow.start("validate_images", {"group_images": VALIDATION_PHOTOS // 4})
    killed_measure = kill_task_while_running(airflow, "validate_images", run_id, "measure", after_s=0.2)
    killed = kill_task_while_running(airflow, "validate_images", run_id, "judge", after_s=0, ready=some_judged)

    assert airflow.wait_for_run("validate_images", run_id, timeout_s=600) == "success"
    assert final_try(airflow, "validate_images", run_id, killed)["try_number"] >= 2
    measures = [task for task in airflow.task_instances("validate_images", run_id) if task["task_id"] == "measure"]
    assert len(measures) >= 4
    assert final_try(airflow, "validate_images", run_id, killed_measure)["try_number"] >= 2
    others = [task for task in measures if task["map_index"] != killed_measure["map_index"]]
    assert all(task["try_number"] == 1 and task["state"] == "success" for task in others), "only its group again"
    groups = airflow.xcom("validate_images", run_id, "plan")
    assert all(store.exists(facts_key(run_id, group)) for group in groups)
    with catalog.session() as session:
        pending = session.scalar(
            select(func.count()).select_from(Image).where(Image.sha256.in_(photos), Image.status == "pending")
        )
        repeated = session.execute(
            select(QualityResult.run_id, QualityResult.image_sha256, QualityResult.check)
            .group_by(QualityResult.run_id, QualityResult.image_sha256, QualityResult.check)
            .having(func.count() > 1)
        ).all()
    drill_report.update(
        outcome="the killed group alone was measured again; every image judged once", objects_lost=pending
    )
    assert pending == 0 and repeated == []
    assert audit_after_fault(stack_settings, drill_report) == []


@pytest.mark.drill("crash: shard write", "SIGKILL of build_dataset.write_shards while a shard is being written")
def test_a_build_killed_mid_shard_publishes_nothing_partial_and_its_retry_completes(
    airflow: AirflowClient, stack_settings: StackSettings, drill_photos: dict[str, Path], drill_report: dict
) -> None:
    conf = {"sources": ["local"], "load_size": 286, "shard_size": 200}
    catalog = open_catalog(stack_settings)
    before = latest_version(catalog)
    run_id = airflow.start("build_dataset", conf)
    killed = kill_task_while_running(
        airflow, "build_dataset", run_id, "write_shards", after_s=0, ready=lambda: staging_busy(stack_settings)
    )
    assert latest_version(catalog) == before, "no version is visible while its shards are being rewritten"

    assert airflow.wait_for_run("build_dataset", run_id, timeout_s=600) == "success"
    assert final_try(airflow, "build_dataset", run_id, killed)["try_number"] == 2
    version = latest_version(catalog)
    manifest = load_manifest(open_store(settings=stack_settings), version)
    with catalog.session() as session:
        members = set(session.scalars(select(DatasetMember.image_sha256).where(DatasetMember.version == version)))
        accepted = set(
            session.scalars(
                select(Image.sha256).where(Image.sha256.in_(list(drill_photos)), Image.status == "accepted")
            )
        )
    lost = accepted - members
    drill_report.update(
        outcome=f"retry published {version} ({manifest['sample_count']} samples), nothing left staged",
        objects_lost=len(lost),
    )
    assert audit_after_fault(stack_settings, drill_report) == []
    assert accepted and not lost
    assert not staging_busy(stack_settings), "the retry removed what the killed try left staged"


@pytest.mark.slow_drill
@pytest.mark.drill("crash: training", "SIGKILL of train_colorizer.train after its first checkpoint")
def test_a_training_task_killed_mid_run_resumes_from_its_last_checkpoint(
    airflow: AirflowClient,
    stack_settings: StackSettings,
    photo_folder: Path,
    drill_photos: dict[str, Path],
    drill_report: dict,
) -> None:
    version = dataset_version(airflow, stack_settings, photo_folder, {"sources": ["local"], "load_size": 80})
    store = open_store(settings=stack_settings)
    steps, every = 300, 10  # long enough on two cores that the kill lands mid-run
    run_id = airflow.start("train_colorizer", {"dataset_version": version, "steps": steps, "checkpoint_every": every})
    mlflow = MlflowClient(stack_settings.mlflow_tracking_uri)

    def checkpointed() -> bool:
        training = run_tagged(stack_settings.mlflow_tracking_uri, EXPERIMENT, {"airflow_run_id": run_id})
        return bool(training) and store.exists(f"{checkpoint_prefix(training)}latest.json")

    try:
        killed = kill_task_while_running(airflow, "train_colorizer", run_id, "train", after_s=0, ready=checkpointed)
        resumed_from = time.monotonic()
        assert airflow.wait_for_run("train_colorizer", run_id, timeout_s=900) == "success"
    finally:  # a drill that failed stops its training, which would otherwise write on during the next drills
        airflow.fail_run("train_colorizer", run_id)
    assert final_try(airflow, "train_colorizer", run_id, killed)["try_number"] == 2
    summary = airflow.xcom("train_colorizer", run_id, "train")
    runs = mlflow.search_runs(
        [mlflow.get_experiment_by_name(EXPERIMENT).experiment_id], filter_string=f"tags.airflow_run_id = '{run_id}'"
    )
    assert [run.info.run_id for run in runs] == [summary["run_id"]], "the retry went on with the same MLflow run"
    log = airflow.task_log("train_colorizer", run_id, "train", try_number=2)
    assert f"resumes run {summary['run_id']}" in log
    assert load_checkpoint(store, latest_checkpoint(store, summary["run_id"]))["position"]["step"] == steps
    logged = {point.step for point in mlflow.get_metric_history(summary["run_id"], "loss_g_l1")}
    every_log = CPU_PROFILE["log_every"]
    gaps = [step for step in [*range(every_log, steps, every_log), steps] if step not in logged]
    drill_report.update(
        outcome=f"retry resumed run {summary['run_id'][:8]} from its checkpoint to step {steps} "
        f"({time.monotonic() - resumed_from:.0f} s)",
        objects_lost=len(gaps),
    )
    assert gaps == []
    assert audit_after_fault(stack_settings, drill_report) == []
