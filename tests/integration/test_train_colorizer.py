"""`train_colorizer` through the real Airflow and the real MLflow server: a short CPU training on the
newest dataset version ends with a complete MLflow run (params, tags naming the Airflow run and the dataset,
losses, validation metrics, sample grids, the dataset manifest and card, the final checkpoint), a checkpoint
in the lake, and an evaluated, registered model with its promotion decision and model card. The same stack
is then looked at in headless Chromium: both UIs must show the run and the champion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from embedded.ui_check import UICheckFailed, check_uis
from models.train import latest_checkpoint, load_checkpoint
from pipelines.catalog import open_catalog
from pipelines.stitch import latest_version
from pipelines.storage import open_store
from tests.corpus import color_photo

pytestmark = pytest.mark.integration

STEPS = 30
UI_CHECKS = ["airflow-login", "airflow-dags", "airflow-run", "mlflow-runs", "mlflow-registry"]


def artifact_paths(client: MlflowClient, run_id: str, path: str = "") -> list[str]:
    found = []
    for entry in client.list_artifacts(run_id, path or None):
        found += artifact_paths(client, run_id, entry.path) if entry.is_dir else [entry.path]
    return found


@dataclass(frozen=True)
class Trained:
    dataset_version: str
    run_id: str  # of train_colorizer in Airflow


@pytest.fixture(scope="module")
def trained(airflow: AirflowClient, stack_settings: StackSettings, photo_folder: Path) -> Trained:
    """Photos in, through validation and a dataset, to a finished train_colorizer run: once for the module."""
    for seed in range(600, 640):
        (photo_folder / f"photo-{seed}.jpg").write_bytes(color_photo(seed))
    assert airflow.run("ingest_local", {"folder": str(photo_folder), "license": "CC0 1.0"})[1] == "success"
    assert airflow.run("validate_images")[1] == "success"
    assert airflow.run("build_dataset", {"load_size": 80, "shard_size": 64})[1] == "success"
    version = latest_version(open_catalog(stack_settings))
    assert version
    run_id, state = airflow.run("train_colorizer", {"dataset_version": version, "steps": STEPS}, timeout_s=900)
    assert state == "success", airflow.task_log("train_colorizer", run_id, "train")
    return Trained(version, run_id)


def test_a_short_training_run_is_tracked_in_mlflow(
    airflow: AirflowClient, stack_settings: StackSettings, trained: Trained
) -> None:
    run_id, version = trained.run_id, trained.dataset_version
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
    assert {"dataset/manifest.json", "dataset/card.md", "dataset/card.json"} <= set(artifacts)
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
    assert version.description.startswith(f"# Model card: colorizer version {version.version}")
    assert mlflow.get_model_version_by_alias("colorizer", "champion") is not None
    after = artifact_paths(mlflow, summary["run_id"])
    assert {"panel/comparison.png", "model_card.md"} <= set(after)
    assert any(path.startswith("quality/") and path.endswith("/index.html") for path in after), after


def test_the_uis_show_every_dag_the_green_run_its_metrics_and_the_champion(
    stack_settings: StackSettings, trained: Trained
) -> None:
    screenshots = check_uis(stack_settings, run_id=trained.run_id)

    assert [screenshot.check for screenshot in screenshots] == UI_CHECKS
    for screenshot in screenshots:
        assert screenshot.path.parent == stack_settings.home / "screenshots"
        with Image.open(screenshot.path) as image:
            assert image.format == "PNG" and image.width >= 1280 and image.height >= 800, screenshot
            darkest, lightest = image.convert("L").getextrema()
            assert lightest - darkest > 100, f"{screenshot.path} is nearly one colour"


@pytest.mark.parametrize(
    ("options", "check", "message"),
    [
        ({"run_id": "no-such-run"}, "airflow-run", "run no-such-run of train_colorizer: the page shows the error"),
        ({"alias": "no-such-alias"}, "mlflow-registry", "alias @no-such-alias on a version of model colorizer"),
    ],
    ids=["unknown-run", "unknown-alias"],
)
def test_a_check_names_what_it_did_not_see_and_keeps_the_screenshot(
    stack_settings: StackSettings, trained: Trained, tmp_path: Path, options: dict, check: str, message: str
) -> None:
    with pytest.raises(UICheckFailed, match=message) as failure:
        check_uis(stack_settings, folder=tmp_path, timeout_s=10, **options)

    assert failure.value.check == check
    assert failure.value.screenshot == tmp_path / f"{check}.png" and failure.value.screenshot.stat().st_size > 0
