"""`build_dataset` through the real Airflow: photos ingested and accepted become a published dataset
version (shards written by mapped tasks, manifest, catalog membership, an asset event naming the version),
and building the same data again publishes nothing new.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from embedded.airflow_api import AirflowClient
from embedded.settings import StackSettings
from pipelines.catalog import DatasetMember, DatasetVersion, Image, open_catalog
from pipelines.raw_zone import content_digest
from pipelines.stitch import iter_samples, load_manifest
from pipelines.storage import open_store
from tests.corpus import color_photo

pytestmark = pytest.mark.integration

SEEDS = range(500, 512)
CONF = {"sources": ["local"], "load_size": 64, "shard_size": 8}


def test_accepted_photos_become_a_published_dataset_version(
    airflow: AirflowClient, stack_settings: StackSettings, photo_folder: Path
) -> None:
    for seed in SEEDS:
        (photo_folder / f"photo-{seed}.jpg").write_bytes(color_photo(seed))
    assert airflow.run("ingest_local", {"folder": str(photo_folder), "license": "CC0 1.0"})[1] == "success"
    assert airflow.run("validate_images")[1] == "success"

    run_id, state = airflow.run("build_dataset", CONF)

    assert state == "success"
    tasks = {
        (task["task_id"], task["map_index"]): task["state"] for task in airflow.task_instances("build_dataset", run_id)
    }
    assert {state for (task_id, _), state in tasks.items() if task_id == "write_shards"} == {"success"}
    assert tasks[("publish", -1)] == "success"
    version = airflow.xcom("build_dataset", run_id, "publish")["version"]
    store, catalog = open_store(settings=stack_settings), open_catalog(stack_settings)
    manifest = load_manifest(store, version)
    assert set(manifest["source_mix"]) == {"local"} and manifest["params"]["load_size"] == 64
    keys = set()
    for shard in manifest["shards"]:
        assert hashlib.sha256(store.get(shard["key"])).hexdigest() == shard["sha256"]
        keys |= {sample.key for sample in iter_samples(store, shard["key"])}
    with catalog.session() as session:
        members = set(session.scalars(select(DatasetMember.image_sha256).where(DatasetMember.version == version)))
        ours = {content_digest(color_photo(seed)) for seed in SEEDS}
        accepted = set(session.scalars(select(Image.sha256).where(Image.sha256.in_(ours), Image.status == "accepted")))
    assert keys == members and len(members) == manifest["sample_count"]
    assert accepted and accepted <= members
    events = airflow.asset_events(source_dag_id="build_dataset", source_run_id=run_id)
    assert [event["extra"] for event in events] == [{"version": version, "samples": manifest["sample_count"]}]

    again, state = airflow.run("build_dataset", CONF)

    assert state == "success"
    assert {task["task_id"]: task["state"] for task in airflow.task_instances("build_dataset", again)}[
        "publish"
    ] == "skipped"
    assert airflow.asset_events(source_dag_id="build_dataset", source_run_id=again) == []
    with catalog.session() as session:
        count = session.scalar(select(func.count()).select_from(DatasetMember).where(DatasetMember.version == version))
    assert count == manifest["sample_count"]


def test_a_takedown_with_rebuild_triggers_a_build_that_leaves_the_photo_out(
    airflow: AirflowClient, stack_settings: StackSettings
) -> None:
    """Runs after the build above: one of its photos is taken down through `apply_takedowns`, whose `rebuild`
    triggers `build_dataset` with the affected version's params."""
    catalog = open_catalog(stack_settings)
    photo = content_digest(color_photo(SEEDS[0]))
    with catalog.session() as session:
        holding = session.scalars(
            select(DatasetVersion)
            .join(DatasetMember, DatasetMember.version == DatasetVersion.version)
            .where(DatasetMember.image_sha256 == photo)
            .order_by(DatasetVersion.created_at)
        ).all()
    ours = [version for version in holding if {key: version.params[key] for key in CONF} == CONF][-1]
    before = {run["dag_run_id"] for run in airflow.runs("build_dataset")}
    conf = {"sha256": photo, "reason": "the author asked", "requested_by": "ana@example.org", "rebuild": True}

    run_id, state = airflow.run("apply_takedowns", conf)

    assert state == "success"
    tasks = {
        (task["task_id"], task["map_index"]): task["state"]
        for task in airflow.task_instances("apply_takedowns", run_id)
    }
    assert tasks.pop(("apply", -1)) == "success" and set(tasks.values()) == {"success"}
    log = airflow.task_log("apply_takedowns", run_id, "apply")
    assert all(f"{version.version} (1 member(s))" in log for version in holding), log
    triggered = [run for run in airflow.runs("build_dataset") if run["dag_run_id"] not in before]
    assert len(triggered) == len(tasks) >= 1
    # Every rebuild ends here, so none publishes (and triggers training) while later tests run.
    assert {airflow.wait_for_run("build_dataset", run["dag_run_id"]) for run in triggered} == {"success"}
    [rebuild] = [run for run in triggered if {key: run["conf"][key] for key in CONF} == CONF]
    rebuilt = airflow.xcom("build_dataset", rebuild["dag_run_id"], "publish")
    assert rebuilt["version"] != ours.version and rebuilt["sample_count"] == ours.sample_count - 1
    with catalog.session() as session:
        assert session.get(Image, photo).status == "withdrawn"
        assert session.get(DatasetMember, (rebuilt["version"], photo)) is None
