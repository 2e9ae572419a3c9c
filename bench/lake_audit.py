"""Lake audit cost as the lake grows: seconds and peak Python memory to audit a folder lake with a SQLite
catalog at two sizes, names and rows only and with every object hashed. The audit must cost the same per
object at any size (time linear, memory bounded by one hash bucket). Results: bench/results/lake_audit.json.

Objects are 2 KiB of random bytes named by their hash, each with its image row and a sighting; building the
lake is not timed.
"""

from __future__ import annotations

import gc
import hashlib
import os
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from bench.report import write_results
from pipelines.catalog import Catalog, Image, ImageStatus, Sighting, utcnow
from pipelines.lake_audit import audit_lake
from pipelines.raw_zone import raw_key
from pipelines.storage import FileStore

SIZES = (5_000, 20_000)
OBJECT_BYTES = 2048
ROWS_PER_INSERT = 5_000


def build_lake(folder: Path, count: int) -> tuple[FileStore, Catalog]:
    store = FileStore(folder / "lake")
    catalog = Catalog(f"sqlite:///{folder / 'catalog.db'}")
    catalog.migrate()
    now = utcnow()
    images, sightings = [], []
    for number in range(count):
        data = os.urandom(OBJECT_BYTES)
        sha256 = hashlib.sha256(data).hexdigest()
        path = store.root / raw_key(sha256, "jpg")  # written straight to its place: staging is not measured
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        images.append(
            {
                "sha256": sha256,
                "raw_key": raw_key(sha256, "jpg"),
                "format": "jpg",
                "byte_size": OBJECT_BYTES,
                "status": ImageStatus.PENDING,
                "first_seen_at": now,
            }
        )
        sightings.append(
            {
                "source": "bench",
                "source_id": str(number),
                "image_sha256": sha256,
                "url": f"https://bench.example/{number}",
                "fetched_at": now,
                "run_id": "bench",
            }
        )
    with catalog.session() as session:
        for start in range(0, count, ROWS_PER_INSERT):
            session.execute(insert(Image), images[start : start + ROWS_PER_INSERT])
            session.execute(insert(Sighting), sightings[start : start + ROWS_PER_INSERT])
    return store, catalog


def measure(store: FileStore, catalog: Catalog, checksums: bool) -> dict[str, float]:
    started = time.perf_counter()
    report = audit_lake(store, catalog, checksums=checksums, grace=timedelta(0))
    seconds = time.perf_counter() - started
    if report.findings:
        raise RuntimeError(f"the benchmark lake drifted: {report.counts()}")
    gc.collect()  # what earlier work left for the collector is not the audit's
    tracemalloc.start()
    audit_lake(store, catalog, checksums=checksums, grace=timedelta(0))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    objects = report.scanned["objects"]
    return {
        "objects": objects,
        "seconds": round(seconds, 2),
        "objects_per_s": round(objects / seconds),
        "us_per_object": round(seconds / objects * 1e6, 1),
        "peak_mib": round(peak / 2**20, 2),
    }


def main() -> None:
    results = []
    for count in SIZES:
        with tempfile.TemporaryDirectory() as folder:
            store, catalog = build_lake(Path(folder), count)
            for checksums in (False, True):
                figures = {"checksums": checksums, **measure(store, catalog, checksums)}
                results.append(figures)
                print(
                    f"{figures['objects']:>7} objects, checksums {'on ' if checksums else 'off'}: "
                    f"{figures['seconds']:>6} s, {figures['us_per_object']:>6} us/object, "
                    f"peak {figures['peak_mib']} MiB"
                )
            catalog.engine.dispose()
    print(f"written to {write_results('lake_audit', {'object_bytes': OBJECT_BYTES, 'results': results})}")


if __name__ == "__main__":
    main()
