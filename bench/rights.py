"""What answering for the photos costs as the catalog grows: a dataset version's card, and a takedown's
catalog side (finding the photos, the versions that hold them) and the tombstones ingestion loads.

A synthetic catalog of N images (`bench.scale.fill`: one sighting each, every one under CC BY 4.0, so the
attribution list is as long as it can be) is written to SQLite with one published version holding every
accepted image, and 1,000 of them withdrawn. Measured at each size, each in a fresh process so its peak
memory is its own:

- `card`: `pipelines.stitch.card.write_card`, card.md and card.json into a lake on disk (attribution list
  streamed a batch at a time);
- `takedown_lookup`: the catalog side of one takedown by author and one by source id: the matching images
  (`matching_images`) and the versions that hold them (`versions_containing`);
- `tombstones`: `Catalog.tombstones`, what every ingestion task loads to refuse withdrawn photos.

The MLflow side of a takedown (runs of the affected versions, their model versions) grows with the number
of runs, not of photos, and is left out. Results: bench/results/rights.json, with per-image costs.

    python -m bench rights              # 100,000 and 1,000,000 images
    python -m bench.rights 10000 100000 # other sizes
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from bench.report import peak_rss_mib, write_results
from bench.scale import fill
from pipelines.catalog import Catalog, DatasetMember, DatasetVersion, Image, ImageStatus, Takedown, Withdrawal, utcnow
from pipelines.lab import LAB_ENCODING
from pipelines.stitch import ShardParams
from pipelines.stitch.card import write_card
from pipelines.stitch.select import split_of
from pipelines.storage import FileStore
from pipelines.takedowns.impact import versions_containing
from pipelines.takedowns.request import TakedownRequest, matching_images

SIZES = (100_000, 1_000_000)
VERSION = "bench-rights"
WITHDRAWN = 1_000
CHUNK = 20_000


def log(message: str) -> None:
    print(f"[bench rights] {message}", file=sys.stderr, flush=True)


def publish_everything(catalog: Catalog) -> dict[str, Any]:
    """One version holding every accepted image, recorded as `publish` records it; its manifest."""
    params = ShardParams()
    counts = dict.fromkeys(("train", "val", "test"), 0)
    with catalog.engine.begin() as connection:
        connection.execute(
            insert(DatasetVersion.__table__),
            [
                {
                    "version": VERSION,
                    "manifest_key": "m",
                    "params": params.to_dict(),
                    "sample_count": 0,
                    "created_at": utcnow(),
                }
            ],
        )
        shas = connection.execute(select(Image.sha256).where(Image.status == ImageStatus.ACCEPTED)).scalars().all()
        for start in range(0, len(shas), CHUNK):
            rows = []
            for sha256 in shas[start : start + CHUNK]:
                split = split_of(sha256, params.split_ratios)
                counts[split] += 1
                rows.append({"version": VERSION, "image_sha256": sha256, "split": split, "shard": f"{split}-{start}"})
            connection.execute(insert(DatasetMember.__table__), rows)
        withdrawn = shas[:WITHDRAWN]
        connection.execute(
            insert(Takedown.__table__),
            [{"id": "td-bench", "selector": {}, "reason": "bench", "requested_by": "bench", "requested_at": utcnow()}],
        )
        connection.execute(
            insert(Withdrawal.__table__),
            [{"takedown_id": "td-bench", "image_sha256": sha, "withdrawn_at": utcnow()} for sha in withdrawn],
        )
        connection.exec_driver_sql("ANALYZE")
    return {
        "version": VERSION,
        "created_at": utcnow().isoformat(),
        "params": params.to_dict(),
        "encoding": LAB_ENCODING,
        "sample_count": len(shas),
        "splits": counts,
        "source_mix": {},
        "duplicates_dropped": 0,
        "failures": [],
        "shards": [{"key": f"shard-{number}"} for number in range(len(shas) // 500 + 1)],
    }


def card_stage(catalog: Catalog, manifest: dict[str, Any], lake: Path) -> int:
    write_card(FileStore(lake), catalog, manifest)
    return sum(path.stat().st_size for path in lake.rglob("card.*"))


def takedown_lookup_stage(catalog: Catalog, manifest: dict[str, Any], lake: Path) -> int:
    found = 0
    for request in (
        TakedownRequest(reason="bench", requested_by="bench", author="nobody-in-particular"),
        TakedownRequest(reason="bench", requested_by="bench", source="flickr", source_id="flickr-1"),
    ):
        shas = matching_images(catalog, request)
        found += len(shas) + len(versions_containing(catalog, shas))
    return found


def tombstones_stage(catalog: Catalog, manifest: dict[str, Any], lake: Path) -> int:
    tombstones = catalog.tombstones()
    return len(tombstones.by_sha256) + len(tombstones.by_source_id)


STAGES: dict[str, Callable[[Catalog, dict[str, Any], Path], int]] = {
    "card": card_stage,
    "takedown_lookup": takedown_lookup_stage,
    "tombstones": tombstones_stage,
}


def _measured(name: str, catalog_url: str, manifest: dict[str, Any], lake: Path) -> tuple[float, float, int]:
    catalog = Catalog(catalog_url)
    started = time.perf_counter()
    result = STAGES[name](catalog, manifest, lake)
    return time.perf_counter() - started, peak_rss_mib(), result


def run_size(images: int, scratch: Path) -> dict[str, Any]:
    url = f"sqlite:///{scratch / f'rights{images}.db'}"
    catalog = Catalog(url)
    catalog.migrate()
    started = time.perf_counter()
    fill(catalog, images)
    manifest = publish_everything(catalog)
    log(f"{images:,} images, {manifest['sample_count']:,} members written in {time.perf_counter() - started:.0f} s")
    figures: dict[str, Any] = {}
    for name in STAGES:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            seconds, peak_mib, result = pool.apply(_measured, (name, url, manifest, scratch / f"lake{images}"))
        figures[name] = {"seconds": round(seconds, 3), "peak_rss_mib": peak_mib, "result": result}
        log(f"  {name}: {seconds:.2f} s, {peak_mib:.0f} MiB, {result:,}")
    catalog.engine.dispose()
    return figures


def main(sizes: tuple[int, ...] = SIZES) -> None:
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="colorflow-bench-rights-") as scratch:
        for images in sizes:
            figures = run_size(images, Path(scratch))
            per_image = {name: round(1000 * values["seconds"] / images, 5) for name, values in figures.items()}
            runs[str(images)] = {**figures, "per_image_ms": per_image}
    largest = runs[str(max(sizes))]
    path = write_results(
        "rights",
        {
            "sizes": list(sizes),
            "runs": runs,
            "card_s": largest["card"]["seconds"],
            "card_bytes": largest["card"]["result"],
            "card_peak_rss_mib": largest["card"]["peak_rss_mib"],
            "takedown_lookup_s": largest["takedown_lookup"]["seconds"],
            "tombstones_s": largest["tombstones"]["seconds"],
        },
    )
    log(f"written {path}")


if __name__ == "__main__":
    main(tuple(int(size) for size in sys.argv[1:]) or SIZES)
