"""What MLflow knows of a dataset version's descendants: the training runs that used it (each run carries the
tag `dataset_version`) and the registered model versions those runs produced, with their aliases. A
takedown asks this, and marks those model versions `contains_withdrawn`.

Only the MLflow client is imported, so asking costs no PyTorch import."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

WITHDRAWN_TAG = "contains_withdrawn"  # the takedown ids whose photos a model version was trained on


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    run_name: str
    experiment: str
    dataset_version: str
    status: str


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    aliases: tuple[str, ...]
    withdrawn_tag: str  # the tag's value as read, "" when unset


def runs_trained_on(client: MlflowClient, dataset_versions: Iterable[str]) -> list[TrainingRun]:
    """Every run, in any experiment, whose `dataset_version` tag is one of `dataset_versions`."""
    experiments = {experiment.experiment_id: experiment.name for experiment in client.search_experiments()}
    found = []
    for version in sorted(set(dataset_versions)):
        page_token = None
        while True:
            runs = client.search_runs(
                list(experiments), filter_string=f"tags.dataset_version = '{version}'", page_token=page_token
            )
            found += [
                TrainingRun(
                    run.info.run_id,
                    run.info.run_name or "",
                    experiments[run.info.experiment_id],
                    version,
                    run.info.status,
                )
                for run in runs
            ]
            page_token = runs.token
            if not page_token:
                break
    return sorted(found, key=lambda run: (run.dataset_version, run.run_id))


def model_versions_from(client: MlflowClient, run_ids: Iterable[str]) -> list[ModelVersion]:
    """Every registered model version logged by one of `run_ids`, with the aliases that point at it (read
    from the registered model: a version search leaves them out)."""
    found, aliases_of = [], {}
    for run_id in sorted(set(run_ids)):
        for version in client.search_model_versions(f"run_id = '{run_id}'"):
            if version.name not in aliases_of:
                aliases_of[version.name] = client.get_registered_model(version.name).aliases
            aliases = tuple(
                sorted(alias for alias, number in aliases_of[version.name].items() if number == version.version)
            )
            found.append(
                ModelVersion(version.name, version.version, run_id, aliases, version.tags.get(WITHDRAWN_TAG, ""))
            )
    return sorted(found, key=lambda model: (model.name, int(model.version)))


def mark_withdrawn(client: MlflowClient, model: ModelVersion, takedown_id: str) -> bool:
    """Add `takedown_id` to the version's `contains_withdrawn` tag; False when it was there already."""
    ids = {item for item in model.withdrawn_tag.split(",") if item}
    if takedown_id in ids:
        return False
    client.set_model_version_tag(model.name, model.version, WITHDRAWN_TAG, ",".join(sorted(ids | {takedown_id})))
    return True
