"""A whole build in one process, where no orchestrator runs the steps: by hand, in benchmarks and in tests.
The DAG `build_dataset` runs the same three steps as tasks."""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from pipelines.catalog import Catalog
from pipelines.stitch.params import ShardParams
from pipelines.stitch.plan import load_shard, plan_build
from pipelines.stitch.publish import load_manifest, publish
from pipelines.stitch.webdataset import write_shard
from pipelines.storage import ObjectStore, open_store

logger = logging.getLogger(__name__)


def _write_shard_in_worker(lake_url: str, shard_key: str, load_size: int) -> dict[str, Any]:
    store = open_store(lake_url)
    return write_shard(store, load_shard(store, shard_key), load_size)


def stitch_dataset(
    store: ObjectStore, catalog: Catalog, params: ShardParams, workers: int = 1, lake_url: str | None = None
) -> dict[str, Any]:
    """Plan, write and publish in one process (CLI, benchmarks, tests); the DAG runs the same three steps as
    tasks. With `workers` > 1 shards are written by that many processes, which open the lake at
    `lake_url`."""
    plan = plan_build(store, catalog, params)
    if plan.published:
        logger.info("dataset %s is already published", plan.version)
        return load_manifest(store, plan.version)
    logger.info("building dataset %s: %d shards", plan.version, len(plan.shards))
    if workers > 1 and len(plan.shards) > 1:
        if lake_url is None:
            raise ValueError("several workers need the lake URL to open the store in each process")
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_write_shard_in_worker, lake_url, key, params.load_size) for key in plan.shards]
            results = [future.result() for future in futures]
    else:
        results = [write_shard(store, load_shard(store, key), params.load_size) for key in plan.shards]
    return publish(store, catalog, plan.summary(), results)
