"""Where a training run reports to: an MLflow run (params, metrics, the dataset as input, sample grids,
checkpoints), or nowhere (quick tests, or a non-zero rank under DDP) with the same calls.

MLflow is imported only when tracking is on: it takes seconds to import and most ranks never need it.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from pipelines.storage import ObjectStore

logger = logging.getLogger(__name__)

EXPERIMENT = "colorizer"


class Tracker:
    """One training run's reporting. Disabled, it still has a run id (checkpoints are keyed by it)."""

    def __init__(
        self,
        enabled: bool,
        tracking_uri: str = "",
        experiment: str = EXPERIMENT,
        run_id: str = "",
        run_name: str = "",
        tags: dict[str, str] | None = None,
    ) -> None:
        self.enabled = enabled
        if not enabled:
            self.run_id = run_id or uuid.uuid4().hex
            return
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri)
        if run_id:
            run = mlflow.start_run(run_id=run_id, log_system_metrics=True)
            mlflow.set_tags(tags or {})  # who resumed it (a later try of the same task, say)
        else:
            mlflow.set_experiment(experiment)
            run = mlflow.start_run(run_name=run_name or None, tags=tags, log_system_metrics=True)
        self.run_id = run.info.run_id
        logger.info("MLflow run %s at %s", self.run_id, tracking_uri)

    def log_params(self, params: dict[str, Any]) -> None:
        if self.enabled:
            self._mlflow.log_params({name: _param(value) for name, value in params.items()})

    def set_tags(self, tags: dict[str, str]) -> None:
        if self.enabled:
            self._mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.enabled:
            self._mlflow.log_metrics(metrics, step=step)

    def log_image(self, image: Image.Image, artifact_file: str) -> None:
        if self.enabled:
            self._mlflow.log_image(image, artifact_file=artifact_file)

    def log_bytes(self, data: bytes, artifact_path: str) -> None:
        """Store `data` as the artifact `artifact_path` (folder/name)."""
        if not self.enabled:
            return
        folder, _, name = artifact_path.rpartition("/")
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / name
            path.write_bytes(data)
            self._mlflow.log_artifact(str(path), artifact_path=folder or None)

    def log_dataset(self, manifest: dict[str, Any], store: ObjectStore) -> None:
        """The dataset version as the run's input: its digest, size, splits and source mix, its manifest, and
        its card (`dataset/card.md`, `dataset/card.json`): the licenses and credits a model trained on it
        answers to, copied from the lake `store` holding the version."""
        if not self.enabled:
            return
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        from pipelines.stitch import manifest_key

        source_uri = store.uri(manifest_key(manifest["version"]))

        dataset = MetaDataset(
            source=HTTPDatasetSource(source_uri), name=f"colorflow-{manifest['version']}", digest=manifest["version"]
        )
        self._mlflow.log_input(
            dataset,
            context="training",
            tags={"samples": str(manifest["sample_count"]), "source_mix": json.dumps(manifest["source_mix"])},
        )
        self._mlflow.set_tags(
            {
                "dataset_version": manifest["version"],
                "dataset_samples": str(manifest["sample_count"]),
                "dataset_source_mix": json.dumps(manifest["source_mix"]),
            }
        )
        self._mlflow.log_dict(manifest, "dataset/manifest.json")
        self._log_dataset_card(manifest["version"], store)

    def _log_dataset_card(self, version: str, store: ObjectStore) -> None:
        """Copy the card from the lake a block at a time (a million members' credits make a large file); a
        version published before cards existed has none until `colorflow dataset card` writes it."""
        from pipelines.stitch import card_keys
        from pipelines.storage import ObjectNotFound

        with tempfile.TemporaryDirectory() as scratch:
            for name, key in card_keys(version).items():
                try:
                    with store.open_read(key) as card, (Path(scratch) / name).open("wb") as copy:
                        shutil.copyfileobj(card, copy)
                except ObjectNotFound:
                    logger.warning("dataset %s has no card: `colorflow dataset card %s` writes it", version, version)
                    return
            self._mlflow.log_artifacts(scratch, artifact_path="dataset")

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self._mlflow.end_run(status=status)


def run_tagged(tracking_uri: str, experiment: str, tags: dict[str, str]) -> str:
    """The newest run of `experiment` carrying all `tags` (say, an earlier try of the same Airflow task),
    or "" when there is none."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return ""
    query = " and ".join(f"tags.{name} = '{value}'" for name, value in tags.items())
    runs = client.search_runs([found.experiment_id], filter_string=query, order_by=["start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else ""


def _param(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list | tuple) else value
