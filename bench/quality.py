"""Fact extraction speed (`pipelines.image_facts.extract_facts`) on 640x480 JPEGs, the size sources serve:
images per second on one core, and per core when two processes share the work. The quality stage must keep
up with ingestion: 100 images per second per core or better. Results: bench/results/quality.json.

Both wall-clock and CPU-time rates are reported: on a shared machine other work steals the core now and
then, which slows the wall clock but not the CPU time the extraction itself needs.

The photos are real (the sandbox library's), cropped to 4:3 and scaled to 640x480, JPEG quality 88.
"""

from __future__ import annotations

import multiprocessing
import resource
import time

from bench.photos import library_jpegs
from bench.report import write_results
from pipelines.image_facts import extract_facts

PHOTO_COUNT, SIZE, QUALITY = 300, (640, 480), 88
TARGET_PER_CORE = 100.0
WARMUP_COUNT = 20  # first calls import scipy's DCT and fill caches
PROCESSES = 2


def photos() -> list[bytes]:
    return library_jpegs(range(PHOTO_COUNT), SIZE, QUALITY)


def extract_all(payloads: list[bytes]) -> tuple[float, float]:
    """Wall and CPU seconds to extract facts from every payload, after a warm-up; fails if one does not decode."""
    for data in payloads[:WARMUP_COUNT]:
        extract_facts(data)
    started, cpu_started = time.perf_counter(), time.process_time()
    for data in payloads:
        if not extract_facts(data).decodes:
            raise RuntimeError("a benchmark photo did not decode")
    return time.perf_counter() - started, time.process_time() - cpu_started


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)  # Linux reports KiB


def main() -> None:
    payloads = photos()
    single_s, single_cpu_s = extract_all(payloads)
    single_rss = peak_rss_mib()

    # Each worker takes an interleaved share; wall time of the slowest is what a task would wait for.
    shares = [payloads[start::PROCESSES] for start in range(PROCESSES)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(PROCESSES) as pool:
        timings = pool.map(extract_all, shares)
    parallel_s = time.perf_counter() - started
    parallel_cpu_s = sum(cpu_s for _wall_s, cpu_s in timings)

    count = len(payloads)
    results = {
        "one process": {
            "processes": 1,
            "images_per_s": round(count / single_s, 1),
            "images_per_s_per_core": round(count / single_s, 1),
            "images_per_cpu_s": round(count / single_cpu_s, 1),
            "ms_per_image": round(1000 * single_s / count, 2),
            "peak_rss_mib": single_rss,
        },
        f"{PROCESSES} processes": {
            "processes": PROCESSES,
            "images_per_s": round(count / parallel_s, 1),
            "images_per_s_per_core": round(count / parallel_s / PROCESSES, 1),
            "images_per_cpu_s": round(count / parallel_cpu_s, 1),
            "ms_per_image": round(1000 * parallel_s * PROCESSES / count, 2),
            "peak_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN),  # the largest worker
        },
    }
    written = write_results(
        "quality",
        {
            "photos": {"count": len(payloads), "size": list(SIZE), "jpeg_quality": QUALITY},
            "target_images_per_s_per_core": TARGET_PER_CORE,
            "results": results,
        },
    )
    print(f"{'run':<14} {'images/s':>9} {'per core':>9} {'per CPU s':>10} {'ms/image':>9} {'peak RSS MiB':>13}")
    for run, figures in results.items():
        print(
            f"{run:<14} {figures['images_per_s']:>9} {figures['images_per_s_per_core']:>9} "
            f"{figures['images_per_cpu_s']:>10} {figures['ms_per_image']:>9} {figures['peak_rss_mib']:>13}"
        )
    verdict = "meets" if results["one process"]["images_per_s_per_core"] >= TARGET_PER_CORE else "MISSES"
    print(f"one core {verdict} the target of {TARGET_PER_CORE:g} images/s; written to {written}")


if __name__ == "__main__":
    main()
