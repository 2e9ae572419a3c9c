"""Training throughput: images per second of the full-size pix2pix pair (U-Net ngf 64 at 256 px, 70x70
PatchGAN), same device, same run, for

(a) the reference pix2pix defaults: fp32, eager, batch 1, BatchNorm, and a loader that decodes each JPEG
    and converts it to Lab with float `skimage.color.rgb2lab` on the CPU (4 loader workers, as the
    reference's `--num_threads`);
(b) Colorflow: `models.train.Trainer` with its shard loader (uint8 Lab scaled on the device), bf16
    autocast and channels_last on CUDA, at batch 16 and at batch 1.

Targets on a GPU: (b) at least 5 times (a) at the reference default settings (Colorflow at its own batch
size), at least 2 times (a) at equal batch size, and the loader keeping the GPU busy at least 90% of the
steady state (busy = 1 - the share of step time spent waiting for the next batch). On the CPU the figures
are reported, not judged: the step itself dominates there.

Both read the same photos (the sandbox library's, 640x480 JPEG): (a) from the JPEG files, (b) from shards
written by the production stitch. Results: bench/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps
from skimage.color import rgb2lab
from torch.utils.data import DataLoader, Dataset

from bench.photos import library_jpegs, store_raw
from bench.report import write_results
from models.data import AB_SCALE
from models.train import TrainConfig, Trainer
from pipelines.catalog import Catalog, ImageStatus, Sighting, utcnow
from pipelines.catalog import Image as ImageRow
from pipelines.stitch import ShardParams, stitch_dataset
from pipelines.storage import FileStore

PHOTOS, PHOTO_SIZE, LOAD, CROP = 160, (640, 480), 286, 256
REFERENCE_WORKERS = 4
# (warm-up steps, measured steps) per device: the CPU takes seconds per full-size step.
STEPS = {"cuda": (20, 200), "cpu": (2, 6)}
TARGETS = {"vs_reference_defaults": 5.0, "vs_reference_equal_batch": 2.0, "gpu_busy": 0.90}


class ReferenceColorization(Dataset):
    """The reference loader: PIL decode, resize to 286, random 256 crop, flip, float Lab per sample."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.open(self.paths[index]).convert("RGB").resize((LOAD, LOAD), Image.Resampling.BICUBIC)
        left, top = random.randint(0, LOAD - CROP), random.randint(0, LOAD - CROP)
        image = image.crop((left, top, left + CROP, top + CROP))
        if random.random() < 0.5:
            image = ImageOps.mirror(image)
        lab = torch.from_numpy(rgb2lab(np.asarray(image)).astype(np.float32)).permute(2, 0, 1)
        return lab[:1] / 50.0 - 1.0, lab[1:] / AB_SCALE


def prepare(root: Path) -> tuple[list[Path], str, str]:
    """JPEG files for (a), and the same photos as an accepted catalog and a built dataset for (b)."""
    store = FileStore(root / "lake")
    catalog = Catalog(f"sqlite:///{root / 'catalog.db'}")
    catalog.migrate()
    (root / "jpeg").mkdir()
    paths = []
    jpegs = library_jpegs(range(PHOTOS), PHOTO_SIZE, resample=Image.Resampling.BICUBIC)
    with catalog.session() as session:
        for number, data in enumerate(jpegs):
            paths.append(root / "jpeg" / f"{number}.jpg")
            paths[-1].write_bytes(data)
            member = store_raw(store, data)
            image = {"sha256": member.sha256, "raw_key": member.raw_key, "format": "jpg", "byte_size": len(data)}
            catalog.upsert(
                session, ImageRow, [{**image, "status": ImageStatus.ACCEPTED, "first_seen_at": utcnow()}], ["sha256"]
            )
            sighting = {"source": "bench", "source_id": str(number), "image_sha256": member.sha256, "url": "-"}
            catalog.upsert(
                session, Sighting, [{**sighting, "fetched_at": utcnow(), "run_id": "bench"}], ["source", "source_id"]
            )
    params = ShardParams(load_size=LOAD, split_ratios=(("train", 1.0), ("val", 0.0), ("test", 0.0)))
    return paths, f"file://{store.root}", stitch_dataset(store, catalog, params)["version"]


def measure(step: Callable[[], float], warmup: int, steps: int, batch: int, device: torch.device) -> dict[str, float]:
    """Images per second and the share of time the device had work, over `steps` after `warmup`.
    `step` returns the seconds it spent waiting for data."""
    for _ in range(warmup):
        step()
    _sync(device)
    waited, started = 0.0, time.perf_counter()
    for _ in range(steps):
        waited += step()
        _sync(device)  # a step's kernels finish before the next wait is timed
    elapsed = time.perf_counter() - started
    return {"images_per_second": round(batch * steps / elapsed, 2), "busy": round(1 - waited / elapsed, 3)}


def forever(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def timed(batches: Iterator[Any], train: Callable[[Any], object]) -> Callable[[], float]:
    def step() -> float:
        started = time.perf_counter()
        batch = next(batches)
        waited = time.perf_counter() - started
        train(batch)
        return waited

    return step


def reference(paths: list[Path], lake_url: str, version: str, device: torch.device, batch: int) -> dict[str, float]:
    config = TrainConfig(
        dataset=version, lake_url=lake_url, batch_size=batch, tracking=False, amp=False, channels_last=False
    )
    trainer = Trainer(config)
    loader = DataLoader(
        ReferenceColorization(paths), batch_size=batch, shuffle=True, num_workers=REFERENCE_WORKERS, drop_last=True
    )

    def train(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
        trainer.optimize(pair[0].to(device), pair[1].to(device))

    return measure(timed(forever(loader), train), *STEPS[device.type], batch, device)


def colorflow(lake_url: str, version: str, device: torch.device, batch: int, workers: int) -> dict[str, float]:
    trainer = Trainer(
        TrainConfig(dataset=version, lake_url=lake_url, batch_size=batch, workers=workers, tracking=False)
    )
    return measure(timed(trainer.batches(), trainer.train_step), *STEPS[device.type], batch, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.train_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16, help="Colorflow's batch size (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="Colorflow's loader workers (default: %(default)s)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="colorflow-bench-train-") as folder:
        print("preparing photos and shards ...", file=sys.stderr)
        paths, lake_url, version = prepare(Path(folder))
        print("(a) reference defaults ...", file=sys.stderr)
        reference_one = reference(paths, lake_url, version, device, batch=1)
        print("(b) Colorflow at batch 1 ...", file=sys.stderr)
        ours_one = colorflow(lake_url, version, device, batch=1, workers=args.workers)
        print(f"(b) Colorflow at batch {args.batch_size} ...", file=sys.stderr)
        ours = colorflow(lake_url, version, device, batch=args.batch_size, workers=args.workers)
    ratios = {
        "vs_reference_defaults": round(ours["images_per_second"] / reference_one["images_per_second"], 2),
        "vs_reference_equal_batch": round(ours_one["images_per_second"] / reference_one["images_per_second"], 2),
        "gpu_busy": ours["busy"],
    }
    details = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads",
        "model": "U-Net ngf 64, 8 downsamplings, PatchGAN ndf 64, 256 px crops",
        "reference_batch_1": reference_one,
        "colorflow_batch_1": ours_one,
        f"colorflow_batch_{args.batch_size}": ours,
        "ratios": ratios,
        "targets": TARGETS,
        "met": {name: ratios[name] >= target for name, target in TARGETS.items()} if device.type == "cuda" else None,
    }
    write_results("train_throughput", details)
    print(json.dumps({"benchmark": "train_throughput", **details}))


if __name__ == "__main__":
    main()
