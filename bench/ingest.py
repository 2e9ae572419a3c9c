"""Ingestion at scale through the real Airflow, on an embedded stack of its own whose sandbox plays the internet.

Web: a backfill of `ingest_flickr` over twenty days, storing at least 5,000 distinct photos, with 200 ms of
latency before every image response (`COLORFLOW_SANDBOX_LATENCY_MS`). Beside it, the floor: a plain script
with 64 threads doing GET + SHA-256 + write for the same image URLs, against the same latency (the sandbox
has every photo encoded in memory by then, which favours the floor). Figures: photos per second from the
backfill's creation to its last run's end, the ratio to the floor, the peak memory of all task processes
together, and photos lost or doubled (catalog rows, lake objects and the photos in the window must agree).

Dumps: generated ILSVRC-style train tars (`sandbox.large_dump`) of 10,000 and 50,000 JPEGs (100 and 500
classes of 100, 160 to 500 px) through `ingest_imagenet`, with Airflow's default pool at one and then two
slots (one slot is one task process, which is one core). The rate is images over the span from the first
part's start to the last part's end (the plan task, which downloads, verifies and indexes the tar once, is
reported on its own), per core: over the slots. Between runs the dump's rows and objects are removed, so
every run stores every image anew. Beside it, the machine's own two-versus-one ratio for pure CPU work
(`cpu_probe_two_vs_one`), as `bench/transform.py` measures it.

Targets (issue 18): web >= 150 photos/s and >= 60% of the floor, peak task memory < 2 GiB, 0 lost or
doubled; dumps >= 300 images/s per core, two workers >= 1.7 x one, per-image cost at 50,000 within 1.3 x the
cost at 10,000. Prints one JSON line (progress goes to stderr); results: bench/results/ingest.json.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threading import local
from typing import Any

import requests
from sqlalchemy import delete, func, select

from bench.load import TaskMemory, photos_in_window
from bench.report import write_results
from bench.transform import best, cpu_probe, spread
from embedded import services
from embedded.airflow_api import AirflowClient
from embedded.ports import free_port
from embedded.settings import StackSettings
from pipelines.catalog import Image, Sighting, open_catalog
from pipelines.storage import open_store
from sandbox.large_dump import MANIFEST, LargeDump, generated_folder
from sandbox.library import PhotoLibrary

DAYS = 22
VARIANTS = 1600  # 14,400 library photos over 30 days; 22 days of them under allowed licenses are over 5,000
WEB_PHOTOS = 5000
TAG = "color"
BATCH_SIZE = 500  # photos per mapped store task: each Airflow task costs seconds of start-up
# Downloads in flight per task and to the one image host: img2dataset keeps about 64 per process.
FLICKR_LIMITS = {"concurrent_fetches": 32, "max_per_host": 32}
LATENCY_MS = 200
FLOOR_THREADS = 64
DUMPS = ("100x100", "500x100")
PARTS_PER_WORKER = 4
PROBE_UNITS = 4
CONNECTION = "imagenet_generated"
FLICKR_CONNECTION = "flickr_bench"


def log(message: str) -> None:
    print(f"[bench ingest] {message}", file=sys.stderr, flush=True)


@contextmanager
def stack(scratch: Path, **overrides: Any) -> Iterator[tuple[StackSettings, AirflowClient]]:
    """An embedded stack of its own (fresh home, free ports), its sandbox far away and thousands of photos big;
    `overrides` are further settings (the executor, its workers)."""
    home = Path(tempfile.mkdtemp(prefix="colorflow-bench-ingest-"))
    home.chmod(0o755)  # the PostgreSQL server runs as its own user
    settings = StackSettings(
        home=home,
        airflow_port=free_port(),
        mlflow_port=free_port(),
        sandbox_port=free_port(),
        postgres_port=free_port(),
        redis_port=free_port(),
        studio_port=free_port(),
        airflow_password="bench",
        **overrides,
    )
    os.environ.update(
        COLORFLOW_SANDBOX_VARIANTS=str(VARIANTS),
        COLORFLOW_SANDBOX_LATENCY_MS=str(LATENCY_MS),
        COLORFLOW_SANDBOX_GENERATED=str(scratch / "dumps"),
    )
    try:
        log("starting the stack")
        services.up(settings)
        yield settings, AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    finally:
        services.down(settings)
        shutil.rmtree(home, ignore_errors=True)


def web(settings: StackSettings, airflow: AirflowClient, scratch: Path) -> dict[str, Any]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day, last_day = today - timedelta(days=DAYS + 1), today - timedelta(days=2)
    expected = photos_in_window(first_day, last_day + timedelta(days=1), TAG)
    if len(expected) < WEB_PHOTOS:
        raise RuntimeError(f"the sandbox's window holds only {len(expected)} photos; widen DAYS")
    flickr = json.loads(services.sandbox_connections(settings)["AIRFLOW_CONN_FLICKR_DEFAULT"])
    airflow.put_connection(FLICKR_CONNECTION, **flickr, extra=json.dumps(FLICKR_LIMITS))
    airflow.wait_for_dag("ingest_flickr")
    airflow.unpause("ingest_flickr")
    log(f"backfilling ingest_flickr over {DAYS} days: {len(expected):,} photos at {LATENCY_MS} ms each")
    conf = {"tags": [TAG], "limit": 1000, "batch_size": BATCH_SIZE, "connection_id": FLICKR_CONNECTION}
    started = time.monotonic()
    with TaskMemory() as memory:
        backfill = airflow.backfill("ingest_flickr", first_day, last_day, conf=conf)
        runs = airflow.wait_for_backfill(backfill, timeout_s=3600)
    elapsed = time.monotonic() - started
    airflow.pause("ingest_flickr")
    airflow.wait_until_idle("ingest_flickr")
    task_seconds: dict[str, float] = {}
    for run in runs:
        for task in airflow.task_instances("ingest_flickr", run["dag_run_id"]):
            task_seconds[task["task_id"]] = task_seconds.get(task["task_id"], 0.0) + (task["duration"] or 0.0)
    with open_catalog(settings).session() as session:
        seen = list(session.scalars(select(Sighting.source_id).where(Sighting.source == "flickr")))
        urls = list(session.scalars(select(Sighting.url).where(Sighting.source_id.in_(expected))))
        images = session.scalar(select(func.count()).select_from(Image))
    objects = sum(1 for _ in open_store(settings=settings).list("raw/"))
    lost = len(expected - set(seen))
    doubled = len(seen) - len(set(seen)) + abs(images - objects) + abs(images - len(set(seen)))
    rate = len(expected & set(seen)) / elapsed
    log(f"web: {len(set(seen)):,} photos in {elapsed:.0f} s ({rate:.1f}/s), {lost} lost, {doubled} doubled")
    floor_rate = floor(urls, scratch / "floor")
    return {
        "web_photos": len(set(seen)),
        "web_runs": len(runs),
        "web_runs_succeeded": sum(run["state"] == "success" for run in runs),
        "web_seconds": round(elapsed, 1),
        "web_photos_per_s": round(rate, 1),
        "web_floor_photos_per_s": round(floor_rate, 1),
        "web_vs_floor": round(rate / floor_rate, 2),
        "web_peak_rss_mib": round(memory.peak_all_tasks_bytes / 2**20),
        "web_peak_task_rss_mib": round(memory.peak_task_bytes / 2**20),
        "web_most_tasks_at_once": memory.most_tasks_at_once,
        "web_lost_or_doubled": lost + doubled,
        "web_task_seconds": {task_id: round(seconds, 1) for task_id, seconds in task_seconds.items()},
        "web_photos_per_store_task_second": round(len(set(seen)) / task_seconds.get("store", elapsed), 1),
        "web_fetch_limits": FLICKR_LIMITS,
        "web_batch_size": BATCH_SIZE,
        "latency_ms": LATENCY_MS,
    }


def floor(urls: list[str], folder: Path) -> float:
    """GET + SHA-256 + write for every URL from 64 threads, as fast as the sandbox answers; photos per second."""
    folder.mkdir(parents=True, exist_ok=True)
    sessions = local()

    def fetch(url: str) -> None:
        if not hasattr(sessions, "http"):
            sessions.http = requests.Session()
        data = sessions.http.get(url, timeout=60).content
        (folder / hashlib.sha256(data).hexdigest()).write_bytes(data)

    started = time.monotonic()
    with ThreadPoolExecutor(FLOOR_THREADS) as pool:
        list(pool.map(fetch, urls))
    elapsed = time.monotonic() - started
    log(f"floor: {len(urls):,} photos in {elapsed:.0f} s ({len(urls) / elapsed:.1f}/s)")
    return len(urls) / elapsed


def forget_dump(settings: StackSettings, source: str = "imagenet") -> None:
    """Remove a source's rows and objects (the dump's by default), so the next run stores every image anew."""
    store = open_store(settings=settings)
    with open_catalog(settings).session() as session:
        ours = select(Sighting.image_sha256).where(Sighting.source == source)
        keys = list(session.scalars(select(Image.raw_key).where(Image.sha256.in_(ours))))
        shas = list(session.scalars(ours))
        session.execute(delete(Sighting).where(Sighting.source == source))
        session.execute(delete(Image).where(Image.sha256.in_(shas)))
        session.commit()
    for key in keys:
        store.delete(key)


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """How many of the spans overlapped at the busiest moment: whether the workers really ran side by side."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = busiest = 0
    for _, change in events:
        running += change
        busiest = max(busiest, running)
    return busiest


def dump_run(settings: StackSettings, airflow: AirflowClient, dump: LargeDump, workers: int) -> dict[str, Any]:
    forget_dump(settings)
    airflow.set_pool_slots("default_pool", workers)
    conf = {
        "connection_id": CONNECTION,
        "archive": "ILSVRC2012",
        "splits": ["train"],
        "parts": workers * PARTS_PER_WORKER,
    }
    run_id = airflow.trigger("ingest_imagenet", conf)
    state = airflow.wait_for_run("ingest_imagenet", run_id, timeout_s=3600)
    tasks = airflow.task_instances("ingest_imagenet", run_id)
    parts = [task for task in tasks if task["task_id"] == "ingest"]
    plan = next(task for task in tasks if task["task_id"] == "plan")
    spans = [(datetime.fromisoformat(task["start_date"]), datetime.fromisoformat(task["end_date"])) for task in parts]
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    span = (last - first).total_seconds()
    with open_catalog(settings).session() as session:
        rows = session.scalar(select(func.count()).select_from(Sighting).where(Sighting.source == "imagenet"))
    result = {
        "state": state,
        "parts": len(parts),
        "images": rows,
        "seconds": round(span, 1),
        "plan_seconds": plan["duration"],
        "part_seconds": sorted(round((end - start).total_seconds(), 1) for start, end in spans),
        "most_parts_at_once": most_at_once(spans),
        "images_per_s": round(rows / span, 1),
        "images_per_s_per_core": round(rows / span / workers, 1),
    }
    log(f"dump {dump.name} with {workers} worker(s): {result}")
    return result


def use_generated_dump(settings: StackSettings, airflow: AirflowClient, name: str, library: PhotoLibrary) -> LargeDump:
    """Point connection `imagenet_generated` at the sandbox's generated dump `name` (built beforehand)."""
    dump = LargeDump.parse(name)
    manifest = json.loads((dump.folder(generated_folder(), library) / MANIFEST).read_text())
    airflow.put_connection(
        CONNECTION,
        conn_type="http",
        host=f"{settings.sandbox_url}/imagenet",
        extra=json.dumps(
            {
                "ilsvrc_url": f"{settings.sandbox_url}/imagenet/generated/{name}",
                "md5": {"ILSVRC2012_img_train.tar": manifest["md5"]},
            }
        ),
    )
    return dump


def dumps(settings: StackSettings, airflow: AirflowClient, library: PhotoLibrary) -> dict[str, Any]:
    airflow.wait_for_dag("ingest_imagenet")
    airflow.unpause("ingest_imagenet")
    airflow.wait_until_idle("ingest_imagenet")  # the scheduled run of the month, with its default params
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for name in DUMPS:
        dump = use_generated_dump(settings, airflow, name, library)
        runs[name] = {workers: dump_run(settings, airflow, dump, workers) for workers in (1, 2)}
    airflow.set_pool_slots("default_pool", 128)
    smallest, largest = runs[DUMPS[0]][1], runs[DUMPS[-1]][1]
    return {
        "dump_images_per_s_per_core": runs[DUMPS[-1]][1]["images_per_s_per_core"],
        "dump_images_per_s_per_core_two_workers": runs[DUMPS[-1]][2]["images_per_s_per_core"],
        "dump_two_vs_one": round(runs[DUMPS[-1]][1]["seconds"] / runs[DUMPS[-1]][2]["seconds"], 2),
        "dump_cost_growth": round(
            (largest["seconds"] / largest["images"]) / (smallest["seconds"] / smallest["images"]), 2
        ),
        "dump_runs": {
            name: {str(workers): run for workers, run in by_workers.items()} for name, by_workers in runs.items()
        },
    }


def cpu_probe_two_vs_one() -> float:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        one = [spread(pool, cpu_probe, [PROBE_UNITS * 2]) for _ in range(3)]
        two = [spread(pool, cpu_probe, [PROBE_UNITS] * 2) for _ in range(3)]
    return round(best(one)[0] / best(two)[0], 2)


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="colorflow-bench-ingest-scratch-"))
    os.environ["COLORFLOW_SANDBOX_VARIANTS"] = str(VARIANTS)
    library = PhotoLibrary()
    for name in DUMPS:
        log(f"generating the {name} dump")
        LargeDump.parse(name).build(scratch / "dumps", library)
    os.environ["COLORFLOW_SANDBOX_GENERATED"] = str(scratch / "dumps")
    try:
        with stack(scratch) as (settings, airflow):
            figures = web(settings, airflow, scratch)
            figures |= dumps(settings, airflow, library)
        figures["cpu_probe_two_vs_one"] = cpu_probe_two_vs_one()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = write_results("ingest", figures)
    print(path.read_text(), end="")


if __name__ == "__main__":
    main()
