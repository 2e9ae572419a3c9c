"""The dataset-dump DAGs through the real Airflow against the sandbox's dump hosts: each stores its images
(or Lab samples) with licenses, and a rerun adds nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from pipelines.catalog import Image, Sighting, open_catalog
from pipelines.settings import Settings

pytestmark = pytest.mark.integration


def run(airflow: AirflowClient, dag_id: str, conf: dict | None = None) -> dict[str, int]:
    airflow.wait_for_dag(dag_id)
    airflow.unpause(dag_id)
    run_id = airflow.trigger(dag_id, conf=conf)
    assert airflow.wait_for_run(dag_id, run_id, timeout_s=600) == "success"
    return airflow.xcom(dag_id, run_id, "summarize")


def licenses(settings: Settings, source: str) -> list[str | None]:
    with open_catalog(settings).session() as session:
        return list(
            session.scalars(
                select(func.coalesce(Sighting.license, Sighting.license_text)).where(Sighting.source == source)
            )
        )


@pytest.mark.parametrize(
    ("dag_id", "source", "conf"),
    [
        ("ingest_imagenet", "imagenet", {"splits": ["val"], "max_images": 20}),
        ("ingest_coco", "coco", {"max_images": 20}),
        ("ingest_kaggle", "kaggle", {"max_images": 16}),
    ],
)
def test_a_dump_dag_stores_its_slice_once(
    airflow: AirflowClient, stack_settings: StackSettings, dag_id: str, source: str, conf: dict
) -> None:
    # Unpausing may also start the scheduled monthly run, which takes the default slice first: the manual
    # run's slice is then partly "already known". Either way the run takes exactly max_images.
    first = run(airflow, dag_id, conf)
    taken = first["samples"] if source == "kaggle" else first["stored"] + first["already_known"]
    assert taken == conf["max_images"], first
    stored = licenses(stack_settings, source)
    assert len(stored) >= conf["max_images"]
    assert all(stored), "every sighting from a dump carries its license terms or their words"

    # The scheduled run may still be queued behind the manual one (one active run at a time): let it finish.
    airflow.wait_until_idle(dag_id)
    before = len(licenses(stack_settings, source))
    run(airflow, dag_id, conf)
    assert len(licenses(stack_settings, source)) == before


def test_kaggle_samples_are_stored_as_lab_arrays(airflow: AirflowClient, stack_settings: StackSettings) -> None:
    run(airflow, "ingest_kaggle", {"max_images": 16})
    with open_catalog(stack_settings).session() as session:
        formats = set(
            session.scalars(
                select(Image.format)
                .join(Sighting, Sighting.image_sha256 == Image.sha256)
                .where(Sighting.source == "kaggle")
            )
        )
    assert formats == {"npy"}
