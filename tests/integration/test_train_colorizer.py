"""`train_colorizer` through the real Airflow and the real MLflow server: a short CPU training on the
newest dataset version ends with a complete MLflow run (params, tags naming the Airflow run and the dataset,
losses, validation metrics, sample grids, the dataset manifest, the final checkpoint), a checkpoint in
the lake, and an evaluated, registered model with its promotion decision.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from embedded.airflow_api import AirflowClient
from models.train import latest_checkpoint, load_checkpoint
from pipelines.catalog import open_catalog
from pipelines.settings import Settings
from pipelines.shards import latest_version
from pipelines.storage import open_store
from tests.corpus import color_photo

pytestmark = pytest.mark.integration

STEPS = 30


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    found = []
    for entry in client.list_artifacts(run_id, path or None):
        found += artifact_paths(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return found


def test_a_short_training_run_is_tracked_in_mlflow(
    airflow: AirflowClient, stack_settings: Settings, photo_folder: Path
) -> None:
    for seed in range(600, 640):
        (photo_folder / f"photo-{seed}.jpg").write_bytes(color_photo(seed))
    assert airflow.run("ingest_local", {"folder": str(photo_folder), "license": "CC0 1.0"})[1] == "success"
    assert airflow.run("validate_images")[1] == "success"
    assert airflow.run("build_dataset", {"load_size": 80, "shard_size": 64})[1] == "success"
    version = latest_version(open_catalog(stack_settings))
    assert version

    run_id, state = airflow.run("train_colorizer", {"dataset_version": version, "steps": STEPS}, timeout_s=900)

    assert state == "success", airflow.task_log("train_colorizer", run_id, "train")
    summary = airflow.xcom("train_colorizer", run_id, "train")
    assert summary["step"] == STEPS
    mlflow = MlflowClient(stack_settings.mlflow_tracking_uri)
    run = mlflow.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dag_id"] == "train_colorizer" and run.data.tags["airflow_run_id"] == run_id
    assert run.data.tags["dataset_version"] == version and run.data.tags["git_commit"] != ""
    assert run.data.tags["airflow_try_number"] == "1" and run.data.tags["device"].startswith("cpu")
    assert run.data.params["steps"] == str(STEPS) and run.data.params["ngf"] == "16"  # the CPU profile
    history = mlflow.get_metric_history(summary["run_id"], "loss_g_l1")
    assert [point.step for point in history][-1] == STEPS
    assert {"val_l1_ab", "val_psnr", "val_ssim", "val_colorfulness_ratio"} <= set(run.data.metrics)
    artifacts = artifact_paths(mlflow, summary["run_id"])
    assert "dataset/manifest.json" in artifacts
    assert any(path.startswith("samples/step-") and path.endswith(".png") for path in artifacts)
    assert any(path.startswith("checkpoints/step-") for path in artifacts)
    assert [dataset.dataset.digest for dataset in run.inputs.dataset_inputs] == [version]
    store = open_store(settings=stack_settings)
    state = load_checkpoint(store, latest_checkpoint(store, summary["run_id"]))
    assert state["position"]["step"] == STEPS
    promotion = airflow.xcom("train_colorizer", run_id, "evaluate_and_promote")
    assert promotion["run_id"] == summary["run_id"] and promotion["promotion"] in ("promoted", "kept champion")
    version = mlflow.get_model_version("colorizer", promotion["version"])
    assert version.run_id == summary["run_id"] and version.tags["promotion"] == promotion["promotion"]
    assert mlflow.get_model_version_by_alias("colorizer", "champion") is not None
    after = artifact_paths(mlflow, summary["run_id"])
    assert "panel/comparison.png" in after
    assert any(path.startswith("quality/") and path.endswith("/index.html") for path in after), after
