"""Idempotency: every DAG run again for the same interval (the same run cleared and rerun, as "Clear" in the
UI does) leaves the lake's objects and the catalog's rows exactly as the first run left them.

A rerun of `train_colorizer` resumes its MLflow run from its last checkpoint, which is already the last
step, and finds its model registered with a decision: it trains nothing and registers nothing new.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from pipelines.settings import Settings
from tests.corpus import color_photo
from tests.drills.audit import PER_RUN_PREFIXES, audit_after_fault, catalog_rows, dataset_version, lake_objects

pytestmark = [pytest.mark.integration]

FOLLOWERS = ("validate_images", "build_dataset", "train_colorizer")
SLOW = pytest.mark.slow_drill


def lake_state(settings: Settings) -> dict[str, str]:
    return {key: digest for key, digest in lake_objects(settings).items() if not key.startswith(PER_RUN_PREFIXES)}


@pytest.fixture(scope="module")
def own_photos() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="colorflow-idempotency-"))
    folder.chmod(0o755)
    for seed in range(9500, 9512):
        (folder / f"photo-{seed}.jpg").write_bytes(color_photo(seed, size=(320, 240)))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def dag_conf(dag_id: str, photos: Path) -> dict:
    return {
        "ingest_local": {"folder": str(photos)},
        "ingest_unsplash": {"limit": 10},
        "ingest_flickr": {"limit": 10},
        "ingest_instagram": {"hashtags": ["cat"], "limit": 10},
        "ingest_imagenet": {"max_images": 10},
        "ingest_coco": {"max_images": 10},
        "ingest_kaggle": {"max_images": 10},
        "validate_images": {},
        "build_dataset": {"sources": ["local"], "load_size": 64, "shard_size": 16},
        "train_colorizer": {"steps": 6, "checkpoint_every": 3},
    }[dag_id]


@pytest.mark.drill("idempotency", "every DAG's run cleared and run again for the same interval")
@pytest.mark.parametrize(
    "dag_id",
    [
        "ingest_local",
        pytest.param("ingest_unsplash", marks=SLOW),
        pytest.param("ingest_flickr", marks=SLOW),
        pytest.param("ingest_instagram", marks=SLOW),
        pytest.param("ingest_imagenet", marks=SLOW),
        pytest.param("ingest_coco", marks=SLOW),
        pytest.param("ingest_kaggle", marks=SLOW),
        pytest.param("validate_images", marks=SLOW),
        "build_dataset",
        pytest.param("train_colorizer", marks=SLOW),
    ],
)
def test_a_rerun_of_the_same_interval_changes_nothing(
    airflow: AirflowClient, stack_settings: StackSettings, own_photos: Path, dag_id: str, drill_report: dict
) -> None:
    if dag_id == "train_colorizer":
        dataset_version(airflow, stack_settings, own_photos, dag_conf("build_dataset", own_photos))
    for follower in FOLLOWERS:  # nothing but the DAG under test may write between the two snapshots
        airflow.wait_for_dag(follower)
        if follower != dag_id:
            airflow.pause(follower)
    run_id, state = airflow.run(dag_id, dag_conf(dag_id, own_photos))
    assert state == "success"
    objects, rows = lake_state(stack_settings), catalog_rows(stack_settings)

    assert airflow.rerun(dag_id, run_id) == "success"

    objects_again, rows_again = lake_state(stack_settings), catalog_rows(stack_settings)
    changed_objects = sorted(set(objects.items()) ^ set(objects_again.items()))
    changed_rows = {table: set(rows[table]) ^ set(rows_again[table]) for table in rows}
    changed_rows = {table: sorted(diff)[:3] for table, diff in changed_rows.items() if diff}
    lost = len(set(objects) - set(objects_again))
    drill_report.update(
        outcome=f"{dag_id}: {len(objects)} objects and {sum(map(len, rows.values()))} rows identical after rerun",
        objects_lost=lost,
    )
    assert changed_objects == [] and changed_rows == {}, (changed_objects[:5], changed_rows)
    assert audit_after_fault(stack_settings, drill_report) == []
