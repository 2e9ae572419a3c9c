"""
### build_dataset

Stitches every accepted image, from every source, into one immutable dataset version of CIE Lab samples:
near duplicates across sources dropped, train/val/test assigned by content hash (an image never changes
split), photos oriented, center-cropped and resized to `load_size`, written as WebDataset tar shards under
`datasets/<version>/` in the lake.

`plan` names the version (a hash of the members and the transform parameters) and cuts the shards;
`write_shards` writes them in parallel, one mapped task per group of shards; `publish` checks them, records
membership in the catalog, writes the dataset card (`card.md`, `card.json`: sources, licenses and the
credits they require, quality, splits, limitations) and writes `manifest.json` last. Until the manifest
exists the version does not exist, so a build killed anywhere leaves nothing visible, and its rerun
completes it. Building a version that is already published does nothing and emits no event.

Scheduled by `validated_images`; emits `lab_dataset` with `{"version", "samples"}` in the event's extra.
Triggered by hand, the params select sources and fetch dates and set the transform.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

from colorflow_alerts import task_defaults
from colorflow_assets import LAB_DATASET, VALIDATED_IMAGES

MAX_WRITE_TASKS = 64  # well under Airflow's max_map_length (1024); each task takes several shards if needed


@dag(
    dag_id="build_dataset",
    schedule=[VALIDATED_IMAGES],
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["colorflow", "dataset"],
    default_args=task_defaults(),
    doc_md=__doc__,
    params={
        "sources": Param([], type="array", items={"type": "string"}, description="Only these sources (empty: all)."),
        "since": Param(None, type=["null", "string"], format="date", description="First fetched on or after."),
        "until": Param(None, type=["null", "string"], format="date", description="First fetched before."),
        "load_size": Param(286, type="integer", minimum=16, description="Side of the stored Lab square (px)."),
        "shard_size": Param(500, type="integer", minimum=1, description="Samples per tar shard."),
        "split_ratios": Param(
            {"train": 0.9, "val": 0.05, "test": 0.05}, type="object", description="Share of each split."
        ),
    },
)
def build_dataset() -> None:
    @task
    def plan() -> list[dict]:
        """Shard groups to write (none when the version is published); the plan's summary goes to XCom
        `summary` for `publish`."""
        from pipelines.catalog import open_catalog
        from pipelines.stitch import ShardParams, group_shards, plan_build
        from pipelines.storage import open_store

        context = get_current_context()
        params = ShardParams.from_dict(dict(context["params"]))
        built = plan_build(open_store(), open_catalog(), params)
        if not built.samples:
            raise AirflowSkipException("no accepted images match the filters: nothing to build")
        context["ti"].xcom_push(key="summary", value=built.summary())
        if built.published:
            return []
        return [
            {"load_size": params.load_size, "shards": group} for group in group_shards(built.shards, MAX_WRITE_TASKS)
        ]

    @task
    def write_shards(group: dict) -> list[dict]:
        from pipelines.stitch import load_shard, write_shard
        from pipelines.storage import open_store

        store = open_store()
        return [write_shard(store, load_shard(store, key), group["load_size"]) for key in group["shards"]]

    @task(outlets=[LAB_DATASET], trigger_rule="none_failed_min_one_success")
    def publish(written: list[list[dict]]) -> dict:
        from pipelines.catalog import open_catalog
        from pipelines.stitch import describe, publish
        from pipelines.storage import open_store

        context = get_current_context()
        summary = context["ti"].xcom_pull(task_ids="plan", key="summary")
        if summary["published"]:
            raise AirflowSkipException(f"dataset {summary['version']} is already published")
        manifest = publish(open_store(), open_catalog(), summary, [shard for group in written for shard in group])
        print(describe(manifest))
        context["outlet_events"][LAB_DATASET].extra = {
            "version": manifest["version"],
            "samples": manifest["sample_count"],
        }
        return {key: manifest[key] for key in ("version", "sample_count", "splits", "source_mix")}

    groups = plan()
    groups >> publish(write_shards.expand(group=groups))


build_dataset()
