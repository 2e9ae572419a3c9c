"""Shard transform speed: how fast accepted JPEGs become 8-bit Lab samples in WebDataset shards, against
the naive path of colorization tutorials and against the floor that decoding alone sets. Images per second
per core, for 640x480 and 1600x1200 JPEGs, at the default `load_size` (286):

(a) naive: Pillow full decode, `ImageOps.fit` to the square (bicubic), float64 `skimage.color.rgb2lab`,
    one `.npy` file per image;
(b) Colorflow: `pipelines.stitch.webdataset.write_shard`, the production path: decode with DCT scaling, EXIF
    orientation, crop and resize, OpenCV's 8-bit Lab, tar writing, checksum and the atomic (fsynced) write;
(c) decode floor: `simplejpeg.decode_jpeg` alone, with the DCT scaling Colorflow asks for.

(a) and (b) read every JPEG from its file in a local lake (the page cache holds them); (c) decodes bytes
already in memory, so its floor is if anything a little high. Targets: (b) at least 8 times (a) and at
least 60% of (c) for both sizes, and two worker processes writing shards at least 1.8 times one.

The scaling run writes every photo of both sizes twice over, as shards, with one worker and then with two
(half of the shards each), from already started and warmed workers; its wall time runs from the first
worker's start to the last one's end. Beside it, the same two-versus-one ratio for pure CPU work
(`cpu_probe_two_vs_one`, ideally 2.0) says how much of a second core the machine really gave.

Each measurement runs in a worker process started with one thread for OpenMP, BLAS and OpenCV, so one
process is one core. Rates are the best of a few repeats after a warm-up, the methods taking turns; on a
shared machine other work steals the core now and then, so CPU-time rates are reported beside the
wall-clock ones. The photos are real (the sandbox library's), distinct, cropped to 4:3 and scaled to each
size (the library serves at most 640 px, so the 1600x1200 ones are upscaled and compress a little better
than camera photos would), JPEG quality 90.

Prints one JSON line with every figure (progress goes to stderr). Results: bench/results/transform.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps
from skimage.color import rgb2lab

from bench.photos import library_jpegs, store_raw
from bench.report import write_results
from pipelines.stitch import DatasetImage, ShardParams, ShardSpec, write_shard
from pipelines.storage import FileStore

SIZES = ((640, 480), (1600, 1200))
PHOTOS_PER_SIZE, JPEG_QUALITY = 120, 90
LOAD_SIZE = ShardParams.load_size
SHARD_SIZE = 60
METHODS = ("naive", "colorflow", "decode_floor")
REPEATS = 5
WARMUP_PER_SIZE = 4  # images of each size every worker transforms, all three ways, before any timing
SCALING_PASSES = 2  # the scaling run transforms every photo of both sizes this many times
PROCESSES = 2
# The machine's own reference for two workers against one: SHA-256 of a block that stays in cache, pure CPU
# that scales perfectly when two cores are really free. Each unit is about half a second.
PROBE_BLOCK_BYTES, PROBE_HASHES_PER_UNIT = 32 * 1024, 20_000
TARGETS = {"colorflow_vs_naive": 8.0, "colorflow_vs_floor": 0.6, "two_workers_vs_one": 1.8}
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
SHARD_PREFIX = "datasets/bench"


@dataclass(frozen=True)
class Job:
    """One timed run in a worker: a method over the members of `shards` (only Colorflow writes them)."""

    method: str
    lake: str
    scratch: str
    shards: list[ShardSpec]


class Timing(NamedTuple):
    """One job's run in a worker. `started` is `time.perf_counter()`, the system-wide monotonic clock on
    Linux, so the starts and ends of jobs in different processes compare."""

    started: float
    wall: float
    cpu: float
    pid: int

    @property
    def ended(self) -> float:
        return self.started + self.wall


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_photos(store: FileStore, size: tuple[int, int], first: int) -> list[DatasetImage]:
    """Encode `PHOTOS_PER_SIZE` distinct library photos at `size` into the lake's raw zone."""
    return [store_raw(store, data) for data in library_jpegs(range(first, first + PHOTOS_PER_SIZE), size, JPEG_QUALITY)]


def shards_of(members: Sequence[DatasetImage], name: str) -> list[ShardSpec]:
    return [
        ShardSpec(f"{SHARD_PREFIX}/{name}/train-{number:05d}.tar", "train", list(members[start : start + SHARD_SIZE]))
        for number, start in enumerate(range(0, len(members), SHARD_SIZE))
    ]


def scaling_jobs(lake: str, scratch: str, members: Sequence[DatasetImage], name: str, workers: int) -> list[Job]:
    """The scaling run's shards (`members`, `SCALING_PASSES` times over), dealt round-robin to `workers`."""
    shards = [spec for run in range(SCALING_PASSES) for spec in shards_of(members, f"{name}-{run}")]
    return [Job("colorflow", lake, f"{scratch}/{name}-{n}", shards[n::workers]) for n in range(workers)]


def naive(store: FileStore, members: Sequence[DatasetImage], scratch: Path) -> None:
    for number, member in enumerate(members):
        with Image.open(io.BytesIO(store.get(member.raw_key))) as image:
            square = ImageOps.fit(image.convert("RGB"), (LOAD_SIZE, LOAD_SIZE))
        np.save(scratch / f"{number}.npy", rgb2lab(np.asarray(square)))


def decode_floor(payloads: Sequence[bytes]) -> None:
    for data in payloads:
        simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=LOAD_SIZE, min_width=LOAD_SIZE)


def run_job(job: Job) -> Timing:
    """In a worker: the wall and CPU seconds the job's method takes over its images."""
    store = FileStore(Path(job.lake))
    members = [member for spec in job.shards for member in spec.members]
    scratch = Path(job.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    payloads = [store.get(member.raw_key) for member in members] if job.method == "decode_floor" else []
    started, cpu_started = time.perf_counter(), time.process_time()
    if job.method == "naive":
        naive(store, members, scratch)
    elif job.method == "colorflow":
        for spec in job.shards:
            if write_shard(store, spec, LOAD_SIZE)["samples"] != len(spec.members):
                raise RuntimeError(f"a benchmark photo was left out of {spec.key}")
    else:
        decode_floor(payloads)
    timing = Timing(started, time.perf_counter() - started, time.process_time() - cpu_started, os.getpid())
    # Untimed: drop what was written (every run writes fresh keys, as a build does), so that the page cache
    # does not flush it to disk in the middle of the next measurement.
    if job.method == "colorflow":
        for spec in job.shards:
            store.delete(spec.key)
    shutil.rmtree(scratch, ignore_errors=True)
    return timing


def cpu_probe(units: int) -> Timing:
    """In a worker: `units` of the reference CPU work."""
    block = bytes(PROBE_BLOCK_BYTES)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(units * PROBE_HASHES_PER_UNIT):
        hashlib.sha256(block).digest()
    return Timing(started, time.perf_counter() - started, time.process_time() - cpu_started, os.getpid())


def spread(pool: Pool, function: Callable[[Any], Timing], tasks: list[Any]) -> tuple[float, float]:
    """Run one task per worker of `pool`; wall seconds from the first start to the last end (dispatch and
    untimed clean-up left out), and CPU seconds of all of them."""
    results = pool.map(function, tasks, chunksize=1)
    if len({result.pid for result in results}) != len(tasks):
        raise RuntimeError("a worker took more than one task of a parallel run")
    wall = max(result.ended for result in results) - min(result.started for result in results)
    return wall, sum(result.cpu for result in results)


def start_worker(lake: str, scratch: str, warmup: list[ShardSpec], ready: Any) -> None:
    """Pool initializer: one thread for OpenCV (the environment already pins OpenMP and BLAS), every method
    run once (lazy imports, caches), then report ready so the parent starts timing only when all are."""
    cv2.setNumThreads(1)
    pid = os.getpid()
    for method in METHODS:
        specs = [ShardSpec(f"{spec.key[:-4]}-{pid}.tar", spec.split, spec.members) for spec in warmup]
        run_job(Job(method, lake, f"{scratch}/warmup-{pid}", specs))
    ready.put(pid)


@contextlib.contextmanager
def one_thread_per_process() -> Iterator[None]:
    """Environment that spawned workers start with: numerical libraries read it when first imported."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def best(timings: list[tuple[float, float]]) -> tuple[float, float]:
    """Shortest wall and shortest CPU time among repeats (each minimum on its own)."""
    return min(wall for wall, _ in timings), min(cpu for _, cpu in timings)


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="colorflow-bench-") as folder:
        root = Path(folder)
        store = FileStore(root / "lake")
        lake, scratch = str(store.root), str(root / "scratch")
        photos: dict[str, list[DatasetImage]] = {}
        for index, (width, height) in enumerate(SIZES):
            log(f"encoding {PHOTOS_PER_SIZE} photos at {width}x{height}")
            photos[f"{width}x{height}"] = build_photos(store, (width, height), index * PHOTOS_PER_SIZE)
        jpeg_kib = {
            label: round(sum(store.size(member.raw_key) for member in members) / len(members) / 1024, 1)
            for label, members in photos.items()
        }
        warmup = shards_of([member for members in photos.values() for member in members[:WARMUP_PER_SIZE]], "warmup")

        # Scaling: every photo of both sizes, sizes alternating so that each shard (and each half) is the same
        # mix, SCALING_PASSES times over; one worker writes all the shards, each of two workers half of them.
        mixed = [member for pair in zip(*photos.values(), strict=True) for member in pair]
        scaling_count = len(mixed) * SCALING_PASSES

        context = multiprocessing.get_context("spawn")  # fresh interpreters, so the thread settings take
        ready = context.Queue()
        log(f"starting 1 + {PROCESSES} workers (one thread each) and warming them up")
        with (
            one_thread_per_process(),
            context.Pool(1, start_worker, (lake, scratch, warmup, ready)) as single,
            context.Pool(PROCESSES, start_worker, (lake, scratch, warmup, ready)) as pair,
        ):
            for _ in range(1 + PROCESSES):
                ready.get()

            timings: dict[str, dict[str, list[tuple[float, float]]]] = {label: {} for label in photos}
            scaling: dict[int, list[tuple[float, float]]] = {1: [], PROCESSES: []}
            probe: dict[int, list[tuple[float, float]]] = {1: [], PROCESSES: []}
            for repeat in range(REPEATS):
                log(f"repeat {repeat + 1} of {REPEATS}")
                for label, members in photos.items():
                    for method in METHODS:
                        name = f"{label}-{method}-{repeat}"
                        job = Job(method, lake, f"{scratch}/{name}", shards_of(members, name))
                        timing = single.apply(run_job, (job,))
                        timings[label].setdefault(method, []).append((timing.wall, timing.cpu))
                for workers, pool in ((1, single), (PROCESSES, pair)):
                    jobs = scaling_jobs(lake, scratch, mixed, f"{workers}w-{repeat}", workers)
                    scaling[workers].append(spread(pool, run_job, jobs))
                    probe[workers].append(spread(pool, cpu_probe, [PROCESSES // workers] * workers))

    sizes: dict[str, dict[str, Any]] = {}
    for label, by_method in timings.items():
        walls = {method: best(by_method[method])[0] for method in METHODS}
        cpus = {method: best(by_method[method])[1] for method in METHODS}
        wall_rates = {method: rate(PHOTOS_PER_SIZE, walls[method]) for method in METHODS}
        cpu_rates = {method: rate(PHOTOS_PER_SIZE, cpus[method]) for method in METHODS}
        sizes[label] = {
            "jpeg_kib": jpeg_kib[label],
            **wall_rates,
            "colorflow_vs_naive": round(walls["naive"] / walls["colorflow"], 2),
            "colorflow_vs_floor": round(walls["decode_floor"] / walls["colorflow"], 3),
            "cpu_rates": {
                **cpu_rates,
                "colorflow_vs_naive": round(cpus["naive"] / cpus["colorflow"], 2),
                "colorflow_vs_floor": round(cpus["decode_floor"] / cpus["colorflow"], 3),
            },
        }
    (one_s, one_cpu_s), (two_s, two_cpu_s) = best(scaling[1]), best(scaling[PROCESSES])
    two_vs_one = round(one_s / two_s, 2)
    met = {
        f"{ratio}_{label}": figures[ratio] >= TARGETS[ratio]
        for label, figures in sizes.items()
        for ratio in ("colorflow_vs_naive", "colorflow_vs_floor")
    }
    met["two_workers_vs_one"] = two_vs_one >= TARGETS["two_workers_vs_one"]
    details = {
        "load_size": LOAD_SIZE,
        "photos": {"per_size": PHOTOS_PER_SIZE, "jpeg_quality": JPEG_QUALITY, "shard_size": SHARD_SIZE},
        "repeats": REPEATS,
        "sizes": sizes,
        "scaling": {
            "images": scaling_count,
            "one_worker": rate(scaling_count, one_s),
            "two_workers": rate(scaling_count, two_s),
            "one_worker_per_cpu_s": rate(scaling_count, one_cpu_s),
            "two_workers_per_cpu_s": rate(scaling_count, two_cpu_s),
            "cpu_probe_two_vs_one": round(best(probe[1])[0] / best(probe[PROCESSES])[0], 2),
        },
        "two_workers_vs_one": two_vs_one,
        "targets": TARGETS,
        "met": met,
    }
    written = write_results("transform", details)
    print(json.dumps({"benchmark": "transform", **details}), flush=True)
    missed = [target for target, ok in met.items() if not ok]
    log(f"{'misses ' + ', '.join(missed) if missed else 'meets every target'}; written to {written}")


if __name__ == "__main__":
    main()
