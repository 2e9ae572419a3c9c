"""Scaling out over Celery workers: the stack's Celery mode with one `default` worker, then two, on the same work.

Three workloads, each run with worker `default-2` stopped and then running (every worker runs one task at a
time, so one worker is one core): web ingestion (a backfill of `ingest_flickr` over a few days, 200 ms of
latency before every image), dump ingestion (`ingest_imagenet` of a generated 50,000-image dump, four parts
per worker), and validation (`validate_images` over 2,000 of the dump's images in groups of 100, put back to
pending between the runs; near duplicates off, as the dump's photos are resized copies of a few hundred).
Between runs a source's rows and objects are removed, so every run does all the work anew. The catalog is a
PostgreSQL server of its own, as in production.

The ceiling is the machine's own: two processes of pure CPU work against one (`cpu_probe_two_vs_one`, as
`bench/transform.py` measures it). Airflow's scheduler, api-server, PostgreSQL and Redis share the same two
cores. Prints one JSON line (progress goes to stderr); results: bench/results/celery_workers.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.ingest import (
    FLICKR_CONNECTION,
    FLICKR_LIMITS,
    LATENCY_MS,
    TAG,
    cpu_probe_two_vs_one,
    dump_run,
    forget_dump,
    stack,
    use_generated_dump,
)
from bench.pipeline_scale import put_back_to_pending, run_stage
from bench.report import write_results
from embedded import postgres, services, workers
from embedded.airflow_api import AirflowClient
from embedded.ports import free_port
from embedded.settings import StackSettings
from embedded.supervisor import Supervisor
from pipelines.catalog import Sighting, open_catalog
from sandbox.large_dump import LargeDump
from sandbox.library import PhotoLibrary

WEB_DAYS = 3
DUMP = "500x100"
VALIDATION = {"limit": 2_000, "group_images": 100}
SECOND_WORKER = f"{workers.SERVICE_PREFIX}default-2"


def log(message: str) -> None:
    print(f"[bench celery_workers] {message}", file=sys.stderr, flush=True)


def use_workers(settings: StackSettings, count: int) -> None:
    """Run the stack's `default` work on one worker or on two (the second stopped or started)."""
    keeper = services.supervisor(settings)
    second = next(service for service in services.stack_services(settings) if service.name == SECOND_WORKER)
    if count == 1:
        keeper.stop(second.name)
    else:
        keeper.start(second)


def web_run(settings: StackSettings, airflow: AirflowClient, count: int) -> dict[str, Any]:
    """A backfill of ingest_flickr over WEB_DAYS days, every photo fetched anew; photos per second."""
    forget_dump(settings, "flickr")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    conf = {"tags": [TAG], "limit": 1000, "batch_size": 100, "connection_id": FLICKR_CONNECTION}
    started = time.monotonic()
    backfill = airflow.backfill(
        "ingest_flickr", today - timedelta(days=WEB_DAYS + 1), today - timedelta(days=2), conf=conf
    )
    runs = airflow.wait_for_backfill(backfill, timeout_s=3600)
    seconds = time.monotonic() - started
    with open_catalog(settings).session() as session:
        photos = session.scalar(select(func.count()).select_from(Sighting).where(Sighting.source == "flickr"))
    result = {
        "runs_succeeded": sum(run["state"] == "success" for run in runs),
        "photos": photos,
        "seconds": round(seconds, 1),
        "photos_per_s": round(photos / seconds, 1),
    }
    log(f"web with {count} worker(s): {result}")
    return result


def two_vs_one(runs: dict[int, dict[str, Any]], seconds: str = "seconds") -> float:
    return round(runs[1][seconds] / runs[2][seconds], 2)


def measure(settings: StackSettings, airflow: AirflowClient, library: PhotoLibrary) -> dict[str, Any]:
    flickr = json.loads(services.sandbox_connections(settings)["AIRFLOW_CONN_FLICKR_DEFAULT"])
    airflow.put_connection(FLICKR_CONNECTION, **flickr, extra=json.dumps(FLICKR_LIMITS))
    for dag_id in ("ingest_flickr", "ingest_imagenet"):
        airflow.wait_for_dag(dag_id)
        airflow.unpause(dag_id)
        airflow.wait_until_idle(dag_id)  # the scheduled run, with its default params
    dump = use_generated_dump(settings, airflow, DUMP, library)
    web, dumps, validations = {}, {}, {}
    for count in (1, 2):
        use_workers(settings, count)
        web[count] = web_run(settings, airflow, count)
        dumps[count] = dump_run(settings, airflow, dump, count)
    for count in (1, 2):
        use_workers(settings, count)
        put_back_to_pending(settings)
        stage = run_stage(airflow, "validate_images", VALIDATION, slots=count, images=VALIDATION["limit"])
        validations[count] = {"seconds": stage.seconds, "tasks": stage.tasks, "most_at_once": stage.most_tasks_at_once}
    return {
        "web_two_vs_one": round(web[2]["photos_per_s"] / web[1]["photos_per_s"], 2),
        "dump_two_vs_one": two_vs_one(dumps),
        "validate_two_vs_one": two_vs_one(validations),
        "web_runs": {str(count): run for count, run in web.items()},
        "dump_runs": {str(count): run for count, run in dumps.items()},
        "validate_runs": {str(count): run for count, run in validations.items()},
        "latency_ms": LATENCY_MS,
    }


@contextmanager
def catalog_server() -> Iterator[str]:
    """A PostgreSQL catalog of its own, as production has: on SQLite, workers writing at once would wait for
    each other's locks, and the figure would measure that instead of the workers."""
    cluster = Path(tempfile.mkdtemp(prefix="colorflow-bench-catalog-"))  # the server user must reach it
    keeper = Supervisor(cluster / "run", cluster / "logs")
    port = free_port()
    postgres.prepare_cluster(cluster, durable=False)
    server = postgres.server_service("catalog-postgres", cluster, port, durable=False)
    keeper.start(server)
    try:
        yield postgres.url(port)
    finally:
        keeper.stop(server.name)
        shutil.rmtree(cluster, ignore_errors=True)


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="colorflow-bench-celery-"))
    os.environ["COLORFLOW_QUALITY_NEAR_DUPLICATE_DISTANCE"] = "-1"
    library = PhotoLibrary()
    log(f"generating the {DUMP} dump")
    LargeDump.parse(DUMP).build(scratch / "dumps", library)
    celery = {"executor": "celery", "default_workers": 2, "worker_concurrency": 1}
    try:
        with catalog_server() as catalog_url, stack(scratch, catalog_url=catalog_url, **celery) as (settings, airflow):
            figures = measure(settings, airflow, library)
        figures["cpu_probe_two_vs_one"] = cpu_probe_two_vs_one()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = write_results("celery_workers", figures)
    print(path.read_text(), end="")


if __name__ == "__main__":
    main()
