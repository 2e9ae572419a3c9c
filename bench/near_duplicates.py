"""Near-duplicate search at a million photos: `pipelines.near_duplicates.keep_first`, the greedy pass both the
quality stage and the dataset stitch make, timed at 100,000 and at 1,000,000 hashes so that growth is
visible, with the peak memory of each run and whether the result equals brute force (every hash compared
with every kept one) on 50,000 hashes, with nothing and with 10,000 of them already accepted.

The hashes are synthetic 64-bit pHashes shaped like a photo collection's: 30% of the photos come in families
(an original and 1 to 5 copies, each with 0 to 8 of the original's bits flipped, as re-encoding and resizing
do), the rest are unrelated photos (independent random bits). The radius is the default
`NEAR_DUPLICATE_DISTANCE`.

Targets: 1,000,000 hashes in under 60 s on one core (the search is single-threaded numpy), peak memory under
3 GiB. Each size runs in a fresh process, so its peak memory is its own (beside the memory the process had
before the search: interpreter, imports and the hashes as strings); times are the best of a few runs,
and CPU time is reported beside them, since other work on a shared machine slows the wall clock. Prints one
JSON line (progress goes to stderr); results: bench/results/near_duplicates.json.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any

import numpy as np
import psutil

from bench.report import peak_rss_mib, write_results
from pipelines.near_duplicates import keep_first
from pipelines.settings import NEAR_DUPLICATE_DISTANCE

SIZES = (100_000, 1_000_000)
EXACT_SIZE, EXACT_ALREADY_KEPT = 50_000, (0, 10_000)
FAMILY_SHARE = 0.3
COPIES = (1, 5)  # copies of an original in a family, fewest and most
MOST_FLIPPED_BITS = 8
HASH_BITS = 64
REPEATS = 2
TARGET_1M_S, TARGET_PEAK_MIB = 60.0, 3 * 1024


def log(message: str) -> None:
    print(f"[bench near_duplicates] {message}", file=sys.stderr, flush=True)


def synthetic_hashes(count: int, seed: int) -> list[str]:
    """`count` hex pHashes: families of an original and its near copies, and unrelated photos, shuffled."""
    rng = np.random.default_rng(seed)
    family_sizes = 1 + rng.integers(COPIES[0], COPIES[1] + 1, size=count)
    family_sizes = family_sizes[np.cumsum(family_sizes) <= int(count * FAMILY_SHARE)]
    originals = rng.integers(0, 2**HASH_BITS, size=len(family_sizes), dtype=np.uint64)
    family_of = np.repeat(np.arange(len(family_sizes)), family_sizes)
    flipped_bits = rng.integers(0, MOST_FLIPPED_BITS + 1, size=len(family_of))
    flipped_bits[np.cumsum(family_sizes) - family_sizes] = 0  # each family's original itself
    # Distinct bits per copy: the first `flipped_bits` of a random order of all the hash's bits.
    bit_orders = rng.permuted(np.tile(np.arange(HASH_BITS, dtype=np.uint8), (len(family_of), 1)), axis=1)
    flips = np.where(
        np.arange(MOST_FLIPPED_BITS) < flipped_bits[:, None],
        np.uint64(1) << bit_orders[:, :MOST_FLIPPED_BITS].astype(np.uint64),
        np.uint64(0),
    )
    members = originals[family_of] ^ np.bitwise_or.reduce(flips, axis=1)
    unrelated = rng.integers(0, 2**HASH_BITS, size=count - len(members), dtype=np.uint64)
    hashes = np.concatenate([members, unrelated])
    rng.shuffle(hashes)
    return [f"{value:016x}" for value in hashes.tolist()]


def brute_force_nearest(hashes: list[str], radius: int, already_kept: int) -> list[int]:
    """The greedy pass by comparing each hash with every kept one: the nearest kept position (the first of
    equally near ones), or -1 where kept."""
    values = np.array([int(phash, 16) for phash in hashes], dtype=np.uint64)
    kept_values = np.empty_like(values)
    kept_positions = np.empty(len(values), dtype=np.int64)
    kept_count = 0
    nearest: list[int] = []
    for position, value in enumerate(values):
        if position >= already_kept and kept_count:
            distances = np.bitwise_count(kept_values[:kept_count] ^ value)
            closest = int(np.argmin(distances))
            if distances[closest] <= radius:
                nearest.append(int(kept_positions[closest]))
                continue
        kept_values[kept_count], kept_positions[kept_count] = value, position
        kept_count += 1
        nearest.append(-1)
    return nearest


def time_keep_first(count: int) -> dict[str, Any]:
    """In a fresh process: the best wall and CPU seconds of `keep_first` over `count` synthetic hashes."""
    hashes = synthetic_hashes(count, seed=count)
    loaded_mib = psutil.Process().memory_info().rss / 2**20
    timings = []
    for _ in range(REPEATS):
        started, cpu_started = time.perf_counter(), time.process_time()
        selection = keep_first(hashes, NEAR_DUPLICATE_DISTANCE)
        timings.append((time.perf_counter() - started, time.process_time() - cpu_started))
    wall_s, cpu_s = min(timings)
    return {
        "images": count,
        "seconds": round(wall_s, 2),
        "cpu_seconds": round(cpu_s, 2),
        "us_per_image": round(1e6 * wall_s / count, 2),
        "dropped": len(selection.dropped),
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_search_mib": round(loaded_mib, 1),
    }


def main() -> None:
    runs = {}
    for count in SIZES:
        log(f"keep_first over {count:,} hashes")
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            runs[count] = pool.apply(time_keep_first, (count,))
        log(f"{runs[count]}")

    exact = {}
    sample = synthetic_hashes(EXACT_SIZE, seed=EXACT_SIZE)
    for already_kept in EXACT_ALREADY_KEPT:
        log(f"brute force over {EXACT_SIZE:,} hashes, {already_kept:,} already kept")
        expected = brute_force_nearest(sample, NEAR_DUPLICATE_DISTANCE, already_kept)
        found = keep_first(sample, NEAR_DUPLICATE_DISTANCE, already_kept=already_kept).nearest_kept.tolist()
        exact[already_kept] = found == expected

    small, large = runs[min(SIZES)], runs[max(SIZES)]
    figures = {
        "radius": NEAR_DUPLICATE_DISTANCE,
        "hashes": {"bits": HASH_BITS, "family_share": FAMILY_SHARE, "copies": list(COPIES)},
        "near_duplicates_1m_s": large["seconds"],
        "near_duplicates_100k_s": small["seconds"],
        "near_duplicates_exact": all(exact.values()),
        "exact_sample": {"images": EXACT_SIZE, "already_kept": list(EXACT_ALREADY_KEPT)},
        "peak_rss_mib": large["peak_rss_mib"],
        "cost_per_image_1m_vs_100k": round(large["us_per_image"] / small["us_per_image"], 2),
        "runs": list(runs.values()),
        "targets": {"near_duplicates_1m_s": TARGET_1M_S, "peak_rss_mib": TARGET_PEAK_MIB},
        "meets_targets": large["seconds"] < TARGET_1M_S and large["peak_rss_mib"] < TARGET_PEAK_MIB,
    }
    print(write_results("near_duplicates", figures).read_text(), end="")


if __name__ == "__main__":
    main()
