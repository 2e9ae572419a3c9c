"""The catalog-bound stages at a million images: whether their cost per image stays flat as the catalog grows.

A synthetic catalog (no pixels) of N images is written straight into SQLite and into PostgreSQL: 95% accepted,
5% pending, one sighting each from one of seven sources over a year, and perceptual hashes shaped like real
ones (families of near copies around a root hash, and unrelated photos), from `bench.near_duplicates`.
Measured at each size, each in a fresh process so its peak memory is its own:

- `pending`: the quality stage's pending-image query (`pipelines.quality.pending.pending_images`), every pending image
  with its sightings;
- `first_seen`, `members`: the stitch's two candidate queries (`pipelines.stitch.select`), every accepted image's
  sha256 and pHash in first-seen order, then address, format and sources in sha256 order, read to the end;
- `plan`: the stitch's whole plan (`pipelines.stitch.plan.plan_build`): both passes, near-duplicate dropping, split
  assignment, the version hash, and every shard's member list written to a lake on disk.

Targets at 1,000,000: queries under 10 s on both databases, the plan under 3 minutes, each under 3 GiB.
Results: bench/results/scale.json, with per-image costs at each size so growth is visible.

    python -m bench scale              # 100,000 and 1,000,000 images
    python -m bench.scale 10000 100000 # other sizes
"""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.near_duplicates import synthetic_hashes
from bench.report import peak_rss_mib, write_results
from embedded import postgres
from embedded.ports import free_port
from embedded.supervisor import Supervisor
from pipelines.catalog import Catalog, Image, ImageStatus, Sighting
from pipelines.licenses import from_term
from pipelines.quality import pending_images
from pipelines.stitch import ShardParams, plan_build
from pipelines.stitch.select import first_seen_query, member_query, query_batches
from pipelines.storage import FileStore

SIZES = (100_000, 1_000_000)
PENDING_SHARE = 0.05
SOURCES = ("coco", "flickr", "imagenet", "instagram", "kaggle", "local", "unsplash")
INSERT_CHUNK = 20_000
FIRST_SEEN = datetime(2026, 1, 1, tzinfo=UTC)
TARGETS = {"queries_1m_max_s": 10.0, "plan_1m_s": 180.0, "peak_rss_gib": 3.0}


def log(message: str) -> None:
    print(f"[bench scale] {message}", file=sys.stderr, flush=True)


def fill(catalog: Catalog, images: int, seed: int = 7) -> None:
    """`images` synthetic images and their sightings, written in chunks straight through SQLAlchemy Core."""
    hashes = synthetic_hashes(images, seed)
    pending_every = round(1 / PENDING_SHARE)
    license_text = "CC BY 4.0"
    license_term = from_term(license_text)
    with catalog.engine.begin() as connection:
        for start in range(0, images, INSERT_CHUNK):
            image_rows, sighting_rows = [], []
            for number in range(start, min(start + INSERT_CHUNK, images)):
                sha256 = hashlib.sha256(number.to_bytes(8, "big")).hexdigest()
                seen = FIRST_SEEN + timedelta(seconds=number * 31_536_000 // images)
                source = SOURCES[number % len(SOURCES)]
                image_rows.append(
                    {
                        "sha256": sha256,
                        "raw_key": f"raw/{sha256[:2]}/{sha256}.jpg",
                        "format": "jpg",
                        "byte_size": 60_000,
                        "width": 640,
                        "height": 480,
                        "phash": hashes[number],
                        "status": ImageStatus.PENDING if number % pending_every == 0 else ImageStatus.ACCEPTED,
                        "first_seen_at": seen,
                    }
                )
                sighting_rows.append(
                    {
                        "source": source,
                        "source_id": f"{source}-{number}",
                        "image_sha256": sha256,
                        "url": f"https://{source}.example/{number}.jpg",
                        "license": license_term,
                        "license_text": license_text,
                        "fetched_at": seen,
                        "run_id": "scale",
                    }
                )
            connection.execute(insert(Image.__table__), image_rows)
            connection.execute(insert(Sighting.__table__), sighting_rows)
        # The planner's statistics, which a catalog that grew day by day has (PostgreSQL's autovacuum gathers
        # them) and a bulk-loaded one lacks until asked.
        connection.exec_driver_sql("ANALYZE")


def _measured(stage: Callable[[Catalog], int], catalog_url: str) -> tuple[float, float, int]:
    """In a fresh process: (seconds, peak RSS in GiB, rows the stage read or planned)."""
    catalog = Catalog(catalog_url)
    started = time.perf_counter()
    rows = stage(catalog)
    seconds = time.perf_counter() - started
    return seconds, peak_rss_mib() / 1024, rows


def pending_stage(catalog: Catalog) -> int:
    return len(pending_images(catalog))


def first_seen_stage(catalog: Catalog) -> int:
    return sum(batch.num_rows for batch in query_batches(catalog, first_seen_query(ShardParams()), ("sha", "phash")))


def members_stage(catalog: Catalog) -> int:
    columns = ("sha256", "raw_key", "format", "sources")
    return sum(batch.num_rows for batch in query_batches(catalog, member_query(ShardParams()), columns))


def plan_stage(catalog: Catalog) -> int:
    with tempfile.TemporaryDirectory() as lake:
        return plan_build(FileStore(Path(lake)), catalog, ShardParams()).samples


STAGES: dict[str, Callable[[Catalog], int]] = {
    "pending": pending_stage,
    "first_seen": first_seen_stage,
    "members": members_stage,
    "plan": plan_stage,
}
QUERIES = ("pending", "first_seen", "members")


def measure(catalog_url: str, stages: tuple[str, ...]) -> dict[str, dict[str, float]]:
    figures = {}
    for name in stages:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            seconds, peak_gib, rows = pool.apply(_measured, (STAGES[name], catalog_url))
        figures[name] = {"seconds": round(seconds, 2), "peak_rss_gib": round(peak_gib, 2), "rows": rows}
        log(f"  {name}: {seconds:.2f} s, {peak_gib:.2f} GiB, {rows:,} rows")
    return figures


@contextmanager
def postgres_server() -> Iterator[int]:
    """A throwaway PostgreSQL server of its own, as the product's catalog would be; its port."""
    folder = Path(tempfile.mkdtemp(prefix="colorflow-bench-scale-pg-"))
    folder.chmod(0o755)  # the server runs as its own user
    port = free_port()
    keeper = Supervisor(folder / "run", folder / "logs")
    postgres.prepare_cluster(folder, durable=False)
    keeper.start(postgres.server_service("postgres", folder, port, durable=False))
    try:
        yield port
    finally:
        keeper.stop("postgres")
        shutil.rmtree(folder, ignore_errors=True)


def run_size(images: int, scratch: Path, postgres_port: int) -> dict[str, Any]:
    """Both databases filled with `images` images from empty, then measured."""
    postgres.ensure_database(postgres_port, f"scale{images}")
    databases = {
        "sqlite": f"sqlite:///{scratch / f'scale{images}.db'}",
        "postgresql": postgres.url(postgres_port, f"scale{images}"),
    }
    figures: dict[str, Any] = {}
    for database, url in databases.items():
        catalog = Catalog(url)
        catalog.migrate()
        started = time.perf_counter()
        fill(catalog, images)
        log(f"{images:,} images in {database} written in {time.perf_counter() - started:.0f} s")
        # The plan reads the same rows whatever the database: measured once, on the product's PostgreSQL.
        stages = (*QUERIES, "plan") if database == "postgresql" else QUERIES
        figures[database] = measure(url, stages)
        catalog.engine.dispose()
    return figures


def per_image_ms(figures: dict[str, Any], images: int) -> dict[str, float]:
    return {
        f"{database}.{stage}": round(1000 * values["seconds"] / images, 4)
        for database, stages in figures.items()
        for stage, values in stages.items()
    }


def main(sizes: tuple[int, ...] = SIZES) -> None:
    runs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="colorflow-bench-scale-") as scratch, postgres_server() as port:
        for images in sizes:
            runs[images] = run_size(images, Path(scratch), port)
    largest, smallest = max(sizes), min(sizes)
    costs = {images: per_image_ms(figures, images) for images, figures in runs.items()}
    for images, cost in costs.items():
        log(f"per image at {images:,}: " + ", ".join(f"{stage} {ms} ms" for stage, ms in cost.items()))
    at_largest = runs[largest]
    figures = {
        "sizes": list(sizes),
        "queries_1m_max_s": max(at_largest[database][stage]["seconds"] for database in at_largest for stage in QUERIES),
        "plan_1m_s": at_largest["postgresql"]["plan"]["seconds"],
        "peak_rss_gib": max(values["peak_rss_gib"] for stages in at_largest.values() for values in stages.values()),
        "cost_growth": {
            stage: round(costs[largest][stage] / costs[smallest][stage], 2) if costs[smallest][stage] else None
            for stage in costs[largest]
        },
        "per_image_ms": {str(images): cost for images, cost in costs.items()},
        "runs": {str(images): figures for images, figures in runs.items()},
        "targets": TARGETS,
    }
    path = write_results("scale", figures)
    print(path.read_text(), end="")


if __name__ == "__main__":
    main(tuple(int(size) for size in sys.argv[1:]) or SIZES)
