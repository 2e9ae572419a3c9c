"""Reading shards back into training tensors (`models.data.ShardStream` through a torch DataLoader) from
local disk: samples per second on one core, batch 16, 256 crops with flips from 286 px Lab samples, the
uint8 batches training moves to its device (where `to_network` scales them; `to_network_cpu_per_second`
reports what that scaling costs when the device is this CPU). Target: 1,000 samples per second per core
or better. Results: bench/results/loader.json.

The shards are made by Colorflow's own writer from real photos (the sandbox library), so the bytes read
are the production format.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader

from bench.photos import library_jpegs, store_raw
from bench.report import write_results
from models.data import ShardStream, to_network
from pipelines.stitch import ShardParams, ShardSpec, write_shard
from pipelines.storage import FileStore

SAMPLE_COUNT, SHARD_SIZE, PHOTO_SIZE = 1200, 200, (640, 480)
BATCH_SIZE, CROP_SIZE = 16, 256
TARGET_PER_CORE = 1000.0
REPEATS = 3


def build_shards(root: Path) -> dict:
    """A manifest-like description of train shards written by `write_shard`."""
    store, load_size = FileStore(root), ShardParams().load_size
    jpegs = library_jpegs(range(SAMPLE_COUNT), PHOTO_SIZE, resample=Image.Resampling.BILINEAR)
    # The library has fewer photos than samples: a trailing number makes every copy distinct bytes.
    members = [store_raw(store, data + number.to_bytes(4, "big")) for number, data in enumerate(jpegs)]
    shards = []
    for index in range(0, SAMPLE_COUNT, SHARD_SIZE):
        spec = ShardSpec(
            f"datasets/bench/train/train-{index // SHARD_SIZE:05d}.tar", "train", members[index : index + SHARD_SIZE]
        )
        shards.append(write_shard(store, spec, load_size))
    return {"encoding": {"name": "lab8-opencv"}, "params": {"load_size": load_size}, "shards": shards}


def samples_per_second(lake_url: str, manifest: dict, workers: int) -> float:
    data = ShardStream(lake_url, manifest, "train", crop_size=CROP_SIZE, seed=0)
    loader = DataLoader(data, batch_size=BATCH_SIZE, num_workers=workers, persistent_workers=workers > 0)
    best = 0.0
    for epoch in range(REPEATS + 1):  # the first pass warms the page cache and starts the workers
        data.set_epoch(epoch)
        started, count = time.perf_counter(), 0
        for batch in loader:
            count += batch.shape[0]
        rate = count / (time.perf_counter() - started)
        best = max(best, rate) if epoch else best
    return best


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="colorflow-bench-loader-") as folder:
        print(f"writing {SAMPLE_COUNT} samples ...", file=sys.stderr)
        manifest = build_shards(Path(folder))
        shard_mb = sum(shard["bytes"] for shard in manifest["shards"]) / 1e6
        one_core = samples_per_second(f"file://{folder}", manifest, workers=0)
        two_workers = samples_per_second(f"file://{folder}", manifest, workers=2)
    batch = torch.randint(0, 256, (BATCH_SIZE, CROP_SIZE, CROP_SIZE, 3), dtype=torch.uint8)
    started = time.perf_counter()
    for _ in range(20):
        to_network(batch)
    scaling = 20 * BATCH_SIZE / (time.perf_counter() - started)
    details = {
        "samples": SAMPLE_COUNT,
        "shard_megabytes": round(shard_mb, 1),
        "batch_size": BATCH_SIZE,
        "crop_size": CROP_SIZE,
        "samples_per_second_one_core": round(one_core, 1),
        "samples_per_second_two_workers": round(two_workers, 1),
        "to_network_cpu_per_second": round(scaling, 1),
        "target_per_core": TARGET_PER_CORE,
        "met": one_core >= TARGET_PER_CORE,
    }
    write_results("loader", details)
    print(json.dumps({"benchmark": "loader", **details}))


if __name__ == "__main__":
    main()
