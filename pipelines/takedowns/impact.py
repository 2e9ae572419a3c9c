"""What a takedown's images reached: the published dataset versions that contain them, the training runs
that used those versions, and the registered model versions those runs produced, with their aliases. The
catalog answers the first; MLflow the rest (`models.lineage`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, as_utc

if TYPE_CHECKING:
    from models.lineage import ModelVersion, TrainingRun


@dataclass(frozen=True)
class AffectedVersion:
    version: str
    created_at: str
    samples: int
    withdrawn_members: int
    params: dict[str, Any]


@dataclass(frozen=True)
class Impact:
    dataset_versions: list[AffectedVersion]
    training_runs: list[TrainingRun] = field(default_factory=list)
    model_versions: list[ModelVersion] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For the report: what the takedown found, not the tags it then set (so a repeat reads the same)."""
        return {
            "dataset_versions": [asdict(version) for version in self.dataset_versions],
            "training_runs": [asdict(run) for run in self.training_runs],
            "model_versions": [
                {key: value for key, value in asdict(model).items() if key != "withdrawn_tag"}
                for model in self.model_versions
            ],
        }


def versions_containing(catalog: Catalog, shas: Sequence[str]) -> list[AffectedVersion]:
    """The published dataset versions with any of `shas` among their members, oldest first."""
    query = (
        select(DatasetVersion, func.count(DatasetMember.image_sha256))
        .join(DatasetMember, DatasetMember.version == DatasetVersion.version)
        .where(DatasetMember.image_sha256.in_(list(shas)))
        .group_by(DatasetVersion.version)
        .order_by(DatasetVersion.created_at, DatasetVersion.version)
    )
    with catalog.session() as session:
        return [
            AffectedVersion(row.version, as_utc(row.created_at).isoformat(), row.sample_count, count, row.params)
            for row, count in session.execute(query)
        ]


def assess(catalog: Catalog, tracking_uri: str, shas: Sequence[str]) -> Impact:
    """The whole impact of withdrawing `shas`. MLflow must answer: a takedown that cannot say which models
    saw the photos stops before it changes anything."""
    from mlflow.tracking import MlflowClient

    from models.lineage import model_versions_from, runs_trained_on

    versions = versions_containing(catalog, shas) if shas else []
    if not versions:
        return Impact([])
    client = MlflowClient(tracking_uri)
    runs = runs_trained_on(client, [version.version for version in versions])
    models = model_versions_from(client, [run.run_id for run in runs])
    return Impact(versions, runs, models)
