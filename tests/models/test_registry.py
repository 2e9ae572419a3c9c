"""The registry with a real MLflow tracking server: a trained run ends up with its evaluation, comparison
grid and a registered pyfunc model (signature, input example); `champion` moves only when the primary
metric improves and the guards hold, and `previous` keeps the old champion; the colorize CLI and
`mlflow models serve` both use `models:/colorizer@champion`. The run carries its dataset's card, and the
model version its model card, which sets the model beside the gray baseline and the truth."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import mlflow
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient
from PIL import Image

from embedded.ports import free_port, wait_for_port
from models.model_card import MODEL_CARD_ARTIFACT
from models.registry import MODEL_NAME, PRIMARY_METRIC, promote, register_run
from pipelines.lab import rgb_to_lab8
from pipelines.stitch import card_keys, load_card
from pipelines.storage import open_store
from sandbox.clips import Clip
from sandbox.library import PhotoLibrary

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PHOTO = PhotoLibrary().image(3).convert("RGB")


def photo_file(folder: Path, name: str, image: Image.Image, image_format: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    image.save(folder / name, format=image_format)
    return folder / name


def test_a_registered_run_has_its_evaluation_and_model(registered: dict, tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    run = client.get_run(registered["run_id"])

    assert registered["promotion"] == "promoted" and registered["compared_with"] == "none"
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == registered["version"]
    assert {PRIMARY_METRIC, "eval_ssim", "eval_l1_ab", "eval_colorfulness_ratio"} <= set(run.data.metrics)
    assert run.data.tags["model_promotion"] == "promoted" and run.data.tags["dag_id"] == "test"
    artifacts = {entry.path for entry in client.list_artifacts(registered["run_id"], "panel")}
    assert artifacts == {"panel/comparison.png"}
    version = client.get_model_version(MODEL_NAME, registered["version"])
    assert json.loads(version.tags["eval_metrics"])[PRIMARY_METRIC] == pytest.approx(run.data.metrics[PRIMARY_METRIC])
    info = mlflow.models.get_model_info(f"models:/{MODEL_NAME}/{registered['version']}")
    assert info.signature.inputs.input_names() == ["image"] and info.saved_input_example_info is not None


def test_the_run_has_its_dataset_card_and_the_version_its_model_card(
    registered: dict, tracking_uri: str, dataset_lake: tuple[str, str]
) -> None:
    client = MlflowClient(tracking_uri)
    lake_url, dataset = dataset_lake
    store = open_store(lake_url)
    logged = mlflow.artifacts.load_text(f"runs:/{registered['run_id']}/dataset/card.md")
    assert logged == store.get(card_keys(dataset)["card.md"]).decode()
    card = mlflow.artifacts.load_text(f"runs:/{registered['run_id']}/{MODEL_CARD_ARTIFACT}")
    assert client.get_model_version(MODEL_NAME, registered["version"]).description == card
    assert card.startswith(f"# Model card: {MODEL_NAME} version {registered['version']}")
    assert f"Dataset version `{dataset}`" in card and store.uri(card_keys(dataset)["card.md"]) in card
    assert "| crop_size | `64` |" in card and "| ngf | `8` |" in card
    metrics = client.get_run(registered["run_id"]).data.metrics
    # The fixture's dataset has no test split: the val split stands in for it.
    for name in ("val", "panel"):
        images = next(line for line in card.splitlines() if line.startswith(f"| {name} |")).split(" | ")[1]
        for who, label in (("model", "model"), ("gray", "gray baseline")):
            l1, psnr, ssim, colorfulness = (
                metrics[f"eval_{name}_{who}_{metric}"] for metric in ("l1_ab", "psnr", "ssim", "colorfulness")
            )
            assert f"| {name} | {images} | {label} | {l1:.2f} | {psnr:.2f} | {ssim:.3f} | {colorfulness:.1f} |" in card
        truth = metrics[f"eval_{name}_model_colorfulness_truth"]
        assert truth == metrics[f"eval_{name}_gray_colorfulness_truth"] > 10
        assert metrics[f"eval_{name}_gray_colorfulness"] < 1  # gray, give or take 8-bit rounding
        assert f"| {name} | {images} | truth | – | – | – | {truth:.1f} |" in card
    assert "no test split" in card
    assert all(f"From its data: {line}" in card for line in load_card(store, dataset)["limitations"])


def test_champion_moves_only_for_a_better_model(registered: dict, tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    first = client.get_model_version(MODEL_NAME, registered["version"])
    metrics = json.loads(first.tags["eval_metrics"])
    worse = mlflow.register_model(first.source, MODEL_NAME).version
    better = mlflow.register_model(first.source, MODEL_NAME).version
    duller = mlflow.register_model(first.source, MODEL_NAME).version

    kept = promote(client, worse, {**metrics, PRIMARY_METRIC: metrics[PRIMARY_METRIC] - 1})
    assert kept["promotion"] == "kept champion" and "not above" in kept["promotion_reason"]
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == first.version

    moved = promote(client, better, {**metrics, PRIMARY_METRIC: metrics[PRIMARY_METRIC] + 1})
    assert moved["promotion"] == "promoted" and moved["compared_with"] == first.version
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == better
    assert client.get_model_version_by_alias(MODEL_NAME, "previous").version == first.version

    guarded = {**metrics, PRIMARY_METRIC: metrics[PRIMARY_METRIC] + 2, "eval_colorfulness_ratio": 0.0}
    assert promote(client, duller, guarded)["promotion"] == "kept champion"
    assert client.get_model_version(MODEL_NAME, duller).tags["promotion_reason"].startswith("guard")
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == better


def test_the_cli_colorizes_with_the_champion(registered: dict, tracking_uri: str, tmp_path: Path) -> None:
    large = photo_file(tmp_path / "in", "large.jpg", PHOTO.resize((3000, 2000)), "JPEG")
    gray = photo_file(tmp_path / "in", "gray.png", PHOTO.convert("L").resize((320, 240)), "PNG")
    env = {**os.environ, "COLORFLOW_MLFLOW_TRACKING_URI": tracking_uri}
    command = [sys.executable, "-m", "models.colorize", str(large), str(gray), "-o", str(tmp_path / "out")]

    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 of 2 photos colorized" in done.stdout
    colored = Image.open(tmp_path / "out" / "large.png")
    assert colored.size == (3000, 2000)
    original_l = rgb_to_lab8(np.asarray(Image.open(large).convert("RGB")))[..., 0].astype(int)
    colored_l = rgb_to_lab8(np.asarray(colored.convert("RGB")))[..., 0].astype(int)
    assert np.abs(colored_l - original_l).max() <= 2
    assert Image.open(tmp_path / "out" / "gray.png").size == (320, 240)


def test_the_cli_colorizes_a_clip_into_an_mp4_with_its_sound(
    registered: dict, tracking_uri: str, tmp_path: Path
) -> None:
    clip = Clip(width=80, height=48, scenes=2, frames_per_scene=6).write(tmp_path / "reel.webm")
    env = {**os.environ, "COLORFLOW_MLFLOW_TRACKING_URI": tracking_uri}
    command = [sys.executable, "-m", "colorflow", "colorize", str(clip), "-o", str(tmp_path / "reel-color.mp4")]

    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    assert "reel.webm: 12 frames (80x48, 12 fps, sound kept)" in done.stdout
    assert "scene cuts: 1" in done.stdout
    with av.open(str(tmp_path / "reel-color.mp4")) as colored:
        assert [stream.codec_context.name for stream in colored.streams] == ["h264", "aac"]
        assert sum(1 for _ in colored.decode(video=0)) == 12


def test_the_served_champion_answers_over_http(registered: dict, tracking_uri: str, tmp_path: Path) -> None:
    port = free_port()
    # The scoring server runs `uvicorn` from PATH: the virtualenv's bin folder must be on it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
    command = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL_NAME}@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        try:
            wait_for_port(port, server, timeout_s=120)
        except RuntimeError:
            pytest.fail((tmp_path / "serve.log").read_text()[-3000:])
        buffer = io.BytesIO()
        PHOTO.resize((200, 150)).save(buffer, format="JPEG")
        body = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(buffer.getvalue()).decode()]]}}

        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)

        gray = requests.post(
            f"http://127.0.0.1:{port}/invocations", json={**body, "params": {"strength": 0.0}}, timeout=120
        )

        assert answer.status_code == 200, answer.text
        png = base64.b64decode(answer.json()["predictions"][0]["image"])
        assert Image.open(io.BytesIO(png)).size == (200, 150)
        assert gray.status_code == 200, gray.text
        gray_png = Image.open(io.BytesIO(base64.b64decode(gray.json()["predictions"][0]["image"])))
        chroma = rgb_to_lab8(np.asarray(gray_png.convert("RGB")))[..., 1:].astype(int) - 128
        assert np.abs(chroma).max() <= 2, "strength 0 should give back the photo in gray"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its workers
        server.wait(timeout=30)


def test_registering_a_run_again_changes_nothing(
    registered: dict, tracking_uri: str, dataset_lake: tuple[str, str]
) -> None:
    client = MlflowClient(tracking_uri)
    before = client.search_model_versions(f"name = '{MODEL_NAME}' and run_id = '{registered['run_id']}'")
    artifacts = [entry.path for entry in client.list_artifacts(registered["run_id"])]

    again = register_run(registered["run_id"], tracking_uri, dataset_lake[0])

    assert again == registered
    after = client.search_model_versions(f"name = '{MODEL_NAME}' and run_id = '{registered['run_id']}'")
    assert sorted(version.version for version in after) == sorted(version.version for version in before)
    assert [entry.path for entry in client.list_artifacts(registered["run_id"])] == artifacts
