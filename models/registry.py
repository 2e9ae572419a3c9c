"""After training: evaluate the run's final generator, log it as the MLflow model `colorizer`, and move the
`champion` alias when it is better than the current champion.

Evaluation covers the dataset's test split (center squares, as stored) and a fixed panel of photos (the
sample photographs shipped with scikit-image, scikit-learn and matplotlib), colorized the way people use
the model (`models.colorize`). The decision rests on one declared primary metric and two guards:

- primary: `eval_psnr` (higher is better), the RGB PSNR over every evaluated image;
- guards: `eval_ssim` may not fall more than `SSIM_TOLERANCE` below the champion's, and
  `eval_colorfulness_ratio` may not fall below `COLORFULNESS_FLOOR` of the champion's (a model that buys
  PSNR with washed-out colors is not better).

Each set is also measured against the gray baseline (the lightness alone), with the truth's colorfulness,
and the model card (`models.model_card`) shows them side by side: it is logged as the run's
`model_card.md` and becomes the model version's description.

The previous champion stays reachable as `previous`; the decision and the numbers are tags on the new
model version and on its run. The logged model is a pyfunc (any image size; base64 image in, base64 PNG
out), so `mlflow models serve -m models:/colorizer@champion` answers HTTP requests.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps

from models.colorize import Colorizer, colorizer_from_state, open_photo
from models.data import ShardStream
from models.metrics import BaselineComparison, colorization_metrics, compare_with_gray, sample_grid
from models.model_card import MODEL_CARD_ARTIFACT, model_card, version_description
from models.networks import NetworkConfig
from models.train import TrainConfig, latest_checkpoint, load_checkpoint
from pipelines.lab import lab8_to_rgb, rgb_to_lab8
from pipelines.stitch import card_keys, load_manifest
from pipelines.stitch.card import load_card_facts
from pipelines.storage import ObjectNotFound, ObjectStore, open_store

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "colorizer"
PRIMARY_METRIC = "eval_psnr"
SSIM_TOLERANCE = 0.01
COLORFULNESS_FLOOR = 0.9
PANEL_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "flower.jpg", "china.jpg")
PANEL_SIDE = 256  # panel photos are colorized at this long side: enough to see, quick on a CPU
TEST_SAMPLES = 64
DEFAULT_PARAMS = {"strength": 1.0}  # the served model's parameters: chroma scale, 0 gray to MAX_STRENGTH


class ColorizerModel(mlflow.pyfunc.PythonModel):
    """The MLflow pyfunc model: generator weights and network config as one artifact, a base64-image
    DataFrame in (`image`), a base64-PNG DataFrame out (`image`)."""

    def load_context(self, context: Any) -> None:
        payload = torch.load(context.artifacts["generator"], map_location="cpu", weights_only=True)
        self._payload = payload
        self._colorizer = self.colorizer_on("cpu")

    def colorizer_on(self, device: str) -> Colorizer:
        payload = self._payload
        return colorizer_from_state(payload["state"], NetworkConfig(**payload["network"]), payload["size"], device)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        strength = float((params or {}).get("strength", DEFAULT_PARAMS["strength"]))
        return colorize_frame(self._colorizer, model_input, strength)


def colorize_frame(colorizer: Colorizer, frame: pd.DataFrame, strength: float = 1.0) -> pd.DataFrame:
    """Base64 images in the `image` column to base64 PNGs, colorized with the chroma scaled by `strength`."""
    colored = []
    for encoded in frame["image"]:
        image = colorizer.colorize(open_photo(base64.b64decode(encoded)), strength)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        colored.append(base64.b64encode(buffer.getvalue()).decode())
    return pd.DataFrame({"image": colored})


def panel_paths() -> list[Path]:
    """The files of the fixed evaluation panel, in `PANEL_PHOTOS` order (those installed)."""
    from pipelines.sources.local import sample_photo_folders

    found = {path.name: path for folder in sample_photo_folders() for path in folder.iterdir()}
    return [found[name] for name in PANEL_PHOTOS if name in found]


def panel_photos() -> list[Image.Image]:
    """The evaluation panel, scaled to PANEL_SIDE."""
    panel = []
    for path in panel_paths():
        image = open_photo(path)
        image.thumbnail((PANEL_SIDE, PANEL_SIDE), Image.Resampling.LANCZOS)
        panel.append(image)
    return panel


@dataclass
class Evaluation:
    """What `evaluate` found: the `eval_*` metrics over every evaluated image (what promotion compares), each
    set against the gray baseline (the test split, or val, then the panel), and the panel's grid."""

    metrics: dict[str, float]
    comparisons: list[BaselineComparison]
    grid: Image.Image

    def comparison_metrics(self) -> dict[str, float]:
        """The comparisons as MLflow metrics, `eval_<set>_<model|gray>_<metric>`, to chart across runs."""
        return {
            f"eval_{comparison.name}_{who}_{name}": value
            for comparison in self.comparisons
            for who, values in (("model", comparison.model), ("gray", comparison.gray))
            for name, value in values.items()
        }


def evaluate(colorizer: Colorizer, lake_url: str, manifest: dict, panel: list[Image.Image]) -> Evaluation:
    """Metrics over the test split (or val, when a small dataset has no test images) and the panel, each set
    also against the gray baseline, and the panel's comparison grid (gray | prediction | truth)."""
    truth, predicted = [], []
    split = next((split for split in ("test", "val") if manifest["splits"].get(split)), None)
    if split is not None:
        stream = ShardStream(lake_url, manifest, split=split, crop_size=colorizer.size, train=False)
        for number, lab8 in enumerate(stream):
            if number >= TEST_SAMPLES:
                break
            truth.append(lab8.numpy())
    for real in truth:
        predicted.append(rgb_to_lab8(np.asarray(colorizer.colorize(Image.fromarray(lab8_to_rgb(real))))))
    panel_truth, panel_predicted = [], []
    for photo in panel:
        square = ImageOps.fit(photo, (colorizer.size, colorizer.size))
        panel_truth.append(rgb_to_lab8(np.asarray(square)))
        panel_predicted.append(rgb_to_lab8(np.asarray(colorizer.colorize(square))))
    metrics = colorization_metrics(np.stack(predicted + panel_predicted), np.stack(truth + panel_truth))
    comparisons = [
        compare_with_gray(name, np.stack(guesses), np.stack(reals))
        for name, guesses, reals in ((split, predicted, truth), ("panel", panel_predicted, panel_truth))
        if reals
    ]
    grid = sample_grid(np.stack(panel_predicted), np.stack(panel_truth), max_rows=len(panel_truth))
    return Evaluation({f"eval_{name}": value for name, value in metrics.items()}, comparisons, grid)


def decide(new: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, str]:
    """Whether `new` should become champion, and why, in words for the tags."""
    if champion is None:
        return True, "first model: no champion yet"
    ours, theirs = new[PRIMARY_METRIC], champion[PRIMARY_METRIC]
    if ours <= theirs:
        return False, f"{PRIMARY_METRIC} {ours:.3f} is not above the champion's {theirs:.3f}"
    if new["eval_ssim"] < champion["eval_ssim"] - SSIM_TOLERANCE:
        return False, f"guard: eval_ssim {new['eval_ssim']:.3f} fell below the champion's {champion['eval_ssim']:.3f}"
    if new["eval_colorfulness_ratio"] < COLORFULNESS_FLOOR * champion["eval_colorfulness_ratio"]:
        return False, "guard: colors are duller than the champion's"
    return True, f"{PRIMARY_METRIC} {ours:.3f} beats the champion's {theirs:.3f}"


def promote(client: Any, version: str, metrics: dict[str, float]) -> dict[str, Any]:
    """Move `champion` to `version` if `decide` says so (the old one becomes `previous`); record why."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(MODEL_NAME, "champion")
    except MlflowException:
        current = None
    champion_metrics = json.loads(current.tags["eval_metrics"]) if current and "eval_metrics" in current.tags else None
    promoted, reason = decide(metrics, champion_metrics)
    if promoted:
        if current is not None:
            client.set_registered_model_alias(MODEL_NAME, "previous", current.version)
        client.set_registered_model_alias(MODEL_NAME, "champion", version)
    decision = {
        "promotion": "promoted" if promoted else "kept champion",
        "promotion_reason": reason,
        "compared_with": current.version if current else "none",
    }
    for key, value in {**decision, "eval_metrics": json.dumps(metrics, sort_keys=True)}.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    logger.info("model version %s: %s (%s)", version, decision["promotion"], reason)
    return {**decision, "version": version}


def quality_reports(store: Any, catalog: Any, version: str) -> dict[str, str]:
    """The quality reports (page and summary) of the validation runs that accepted the dataset's images,
    as artifact path -> text: what a person checks when a model's data is in doubt."""
    from sqlalchemy import select

    from pipelines.catalog import DatasetMember, QualityResult
    from pipelines.quality import report_prefix

    with catalog.session() as session:
        runs = session.scalars(
            select(QualityResult.run_id)
            .join(DatasetMember, DatasetMember.image_sha256 == QualityResult.image_sha256)
            .where(DatasetMember.version == version)
            .distinct()
        ).all()
    reports = {}
    for quality_run in sorted(runs):
        prefix = report_prefix(quality_run)
        for name in ("index.html", "summary.json"):
            if store.exists(prefix + name):
                reports[f"quality/{prefix.split('/')[-2]}/{name}"] = store.get(prefix + name).decode()
    return reports


def registered_version(client: Any, run_id: str) -> Any:
    """The model version `register_run` made for `run_id` (the first one with a promotion decision), or None."""
    versions = client.search_model_versions(f"name = '{MODEL_NAME}' and run_id = '{run_id}'")
    decided = [version for version in versions if "promotion" in version.tags and "eval_metrics" in version.tags]
    return min(decided, key=lambda version: int(version.version), default=None)


def register_run(run_id: str, tracking_uri: str, lake_url: str, catalog: Any = None) -> dict[str, Any]:
    """Evaluate a finished training run's last checkpoint, log and register its model, decide promotion.
    With the `catalog`, the quality reports of the run's data go with it (`quality/<validation run>/`).

    A run registers once: when its model already has a version with a promotion decision (the task was
    cleared and run again), that decision is returned and nothing new is logged or registered."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    earlier = registered_version(client, run_id)
    if earlier is not None:
        logger.info("run %s is already registered as version %s: nothing to do", run_id, earlier.version)
        decision = {key: earlier.tags[key] for key in ("promotion", "promotion_reason", "compared_with")}
        metrics = json.loads(earlier.tags["eval_metrics"])
        return {**decision, "version": earlier.version, "run_id": run_id, "metrics": metrics}
    store = open_store(lake_url)
    state = load_checkpoint(store, latest_checkpoint(store, run_id))
    config = TrainConfig(**state["config"])
    network = config.networks()
    colorizer = colorizer_from_state(state["generator"], network, config.crop_size)
    panel = panel_photos()
    manifest = load_manifest(store, config.dataset)
    evaluation = evaluate(colorizer, lake_url, manifest, panel)
    mlflow.set_tracking_uri(tracking_uri)
    reports = quality_reports(store, catalog, config.dataset) if catalog is not None else {}
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics({**evaluation.metrics, **evaluation.comparison_metrics()})
        for artifact, text in reports.items():
            mlflow.log_text(text, artifact)
        mlflow.log_image(evaluation.grid, artifact_file="panel/comparison.png")
        version = log_colorizer(colorizer, state["generator"], network, panel)
        card = model_card(
            model=MODEL_NAME,
            version=version,
            run_id=run_id,
            config=state["config"],
            steps=state["position"]["step"],
            manifest=manifest,
            comparisons=evaluation.comparisons,
            metrics=evaluation.metrics,
            **dataset_card_of(store, config.dataset),
        )
        mlflow.log_text(card, MODEL_CARD_ARTIFACT)
        description = version_description(card, f"runs:/{run_id}/{MODEL_CARD_ARTIFACT}")
        client.update_model_version(MODEL_NAME, version, description=description)
        decision = promote(client, version, evaluation.metrics)
        mlflow.set_tags({f"model_{key}": str(value) for key, value in decision.items()})
    return {**decision, "run_id": run_id, "metrics": evaluation.metrics}


def dataset_card_of(store: ObjectStore, version: str) -> dict[str, Any]:
    """Where a dataset version's card is and the limitations it lists, for the model card; none for a version
    published before cards existed."""
    try:
        limitations = load_card_facts(store, version)["limitations"]
    except ObjectNotFound:
        return {"dataset_card": None, "dataset_limitations": []}
    return {"dataset_card": store.uri(card_keys(version)["card.md"]), "dataset_limitations": limitations}


def log_colorizer(colorizer: Colorizer, generator_state: dict, network: NetworkConfig, panel: list[Image.Image]) -> str:
    """Log the generator as the pyfunc model `colorizer` in the active run and register it; returns the new
    version's number."""
    from mlflow.models import infer_signature

    example = pd.DataFrame({"image": [_example_image(panel)]})
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "generator.pt"
        torch.save({"state": generator_state, "network": asdict(network), "size": colorizer.size}, weights)
        logged = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=ColorizerModel(),
            artifacts={"generator": str(weights)},
            # The model's own code travels with it, so a serving host needs only the requirements.
            code_paths=[str(REPO_ROOT / "models"), str(REPO_ROOT / "pipelines")],
            # Serving reads `params` ({"strength": 0.5} beside the data) only when the signature declares them.
            signature=infer_signature(example, colorize_frame(colorizer, example), params=DEFAULT_PARAMS),
            input_example=example,
            registered_model_name=MODEL_NAME,
        )
    return str(logged.registered_model_version)


def _example_image(panel: list[Image.Image]) -> str:
    """A small photo as base64: the input example and the signature's source."""
    buffer = io.BytesIO()
    photo = panel[0] if panel else Image.new("RGB", (48, 32), "gray")
    photo.resize((48, 32)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
