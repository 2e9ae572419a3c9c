"""Training data: a dataset version's Lab shards streamed from the lake (`file://` or `s3://`) into
(L, ab) tensors scaled to [-1, 1] (`to_network`, on the training device), with pix2pix's augmentation
(random crop, horizontal flip) done here, not in the shards.

Shards are dealt out to (rank, worker) pairs, so every DDP process and every DataLoader worker reads
different shards and nothing is read twice per epoch. Order depends only on (seed, epoch): an epoch's
stream is the same on every run, which is what lets training resume exactly from a step count.

    data = ShardStream(lake_url, manifest, split="train", crop_size=256, seed=0)
    data.set_epoch(3)
    loader = DataLoader(data, batch_size=16, num_workers=4, pin_memory=True)
    for batch in loader:
        lightness, ab = to_network(batch.to(device, non_blocking=True))
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from pipelines.lab import AB_OFFSET, L_SCALE, LAB_ENCODING
from pipelines.stitch import iter_samples
from pipelines.storage import ObjectStore, open_store

# The networks see CIE units scaled into tanh's range: L* in [0, 100] as [-1, 1], and a*, b* divided by 110
# (sRGB's gamut spans about a in [-86, 98] and b in [-108, 94], so, as in pix2pix's colorization mode, every
# real color fits without wasting much of the range).
L_HALF_RANGE = 50.0
AB_SCALE = 110.0
# Per stored channel (L, a, b): network value = stored value * scale + offset, the stored encoding
# (`pipelines.lab`) decoded to CIE units and scaled in one step.
NETWORK_SCALE = (L_SCALE / L_HALF_RANGE, 1 / AB_SCALE, 1 / AB_SCALE)
NETWORK_OFFSET = (-1.0, -AB_OFFSET / AB_SCALE, -AB_OFFSET / AB_SCALE)


@functools.lru_cache(maxsize=8)
def _network_affine(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel (L, a, b): network value = stored value * scale + offset. Made
    once per device, so a training step copies nothing to the GPU but its batch."""
    return torch.tensor(NETWORK_SCALE, device=device), torch.tensor(NETWORK_OFFSET, device=device)


def to_network(lab8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 8-bit Lab (N, H, W, 3) to the generator's input L (N, 1, H, W) and target ab (N, 2, H, W),
    both in [-1, 1]. Call it on the training device: the loader ships compact uint8 and the GPU does the
    arithmetic, in one pass over NHWC memory; L and ab are views of it (channels innermost), not copies."""
    scale, offset = _network_affine(lab8.device)
    scaled = torch.addcmul(offset, lab8.float(), scale).clamp_(-1.0, 1.0)
    channels = scaled.permute(0, 3, 1, 2)
    return channels[:, :1], channels[:, 1:]


def from_network(lightness: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    """The inverse of `to_network`: (N, 1, H, W) and (N, 2, H, W) in [-1, 1] to 8-bit Lab (N, H, W, 3)."""
    stored_l = (lightness.float() + 1.0) * (L_HALF_RANGE / L_SCALE)
    lab = torch.cat([stored_l, ab.float() * AB_SCALE + AB_OFFSET], dim=1)
    return lab.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def augment(lab8: np.ndarray, crop_size: int, rng: random.Random) -> np.ndarray:
    """pix2pix's augmentation: a random `crop_size` square and a coin-flip mirror."""
    height, width = lab8.shape[:2]
    if height < crop_size or width < crop_size:
        raise ValueError(f"sample is {width}x{height}, smaller than the {crop_size} crop: rebuild with a larger load")
    top, left = rng.randint(0, height - crop_size), rng.randint(0, width - crop_size)
    crop = lab8[top : top + crop_size, left : left + crop_size]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def center_crop(lab8: np.ndarray, crop_size: int) -> np.ndarray:
    """Evaluation sees the same middle square every time."""
    height, width = lab8.shape[:2]
    top, left = (height - crop_size) // 2, (width - crop_size) // 2
    return lab8[top : top + crop_size, left : left + crop_size]


class ShardStream(IterableDataset):
    """One split of a dataset version as a stream of uint8 Lab crops (H, W, 3), for `to_network`. With
    `train`, shards are shuffled per epoch and samples go through a shuffle buffer and `augment`; otherwise
    order is fixed and crops central."""

    def __init__(
        self,
        lake_url: str,
        manifest: dict[str, Any],
        split: str = "train",
        crop_size: int = 256,
        train: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 256,
        load_size: int = 0,
    ) -> None:
        if manifest["encoding"]["name"] != LAB_ENCODING["name"]:
            raise ValueError(f"unsupported Lab encoding {manifest['encoding']['name']!r}")
        stored = manifest["params"]["load_size"]
        self.load_size = load_size or stored
        if self.load_size > stored:
            raise ValueError(f"load size {self.load_size} is larger than the dataset's {stored}: build a larger one")
        if crop_size > self.load_size:
            raise ValueError(f"crop {crop_size} is larger than the load size {self.load_size}")
        self.lake_url = lake_url
        self.shards = [shard["key"] for shard in manifest["shards"] if shard["split"] == split and shard["samples"]]
        self.length = sum(shard["samples"] for shard in manifest["shards"] if shard["split"] == split)
        self.crop_size = crop_size
        self.train = train
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer if train else 0
        self.epoch = 0
        self._store: ObjectStore | None = None

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get a copy without the parent's lake client (an S3 client cannot be pickled).
        return {**self.__dict__, "_store": None}

    def set_epoch(self, epoch: int) -> None:
        """Set before each epoch (as with DistributedSampler) so every epoch has its own order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[torch.Tensor]:
        rank, world = (
            (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        )
        worker = get_worker_info()
        worker_id, workers = (worker.id, worker.num_workers) if worker else (0, 1)
        reader, readers = rank * workers + worker_id, world * workers
        rng = random.Random(f"{self.seed}:{self.epoch}:{reader}")
        shards = list(self.shards)
        if self.train:
            random.Random(f"{self.seed}:{self.epoch}").shuffle(shards)
        # Fewer shards than readers (small datasets): every reader walks all shards and keeps every n-th sample.
        by_shard = len(shards) >= readers
        mine = shards[reader::readers] if by_shard else shards
        buffer: list[np.ndarray] = []
        for position, lab8 in enumerate(self._samples(mine)):
            if not by_shard and position % readers != reader:
                continue
            if not self.shuffle_buffer:
                yield self._tensors(lab8, rng)
                continue
            buffer.append(lab8)
            if len(buffer) >= self.shuffle_buffer:
                yield self._tensors(buffer.pop(rng.randrange(len(buffer))), rng)
        rng.shuffle(buffer)
        for lab8 in buffer:
            yield self._tensors(lab8, rng)

    def _samples(self, shards: list[str]) -> Iterator[np.ndarray]:
        if self._store is None:  # opened lazily: each DataLoader worker process needs its own client
            self._store = open_store(self.lake_url)
        for key in shards:
            for sample in iter_samples(self._store, key):
                yield sample.lab8

    def _tensors(self, lab8: np.ndarray, rng: random.Random) -> torch.Tensor:
        if lab8.shape[0] != self.load_size:  # a smaller model trains on the whole photo, scaled down
            lab8 = cv2.resize(lab8, (self.load_size, self.load_size), interpolation=cv2.INTER_AREA)
        crop = augment(lab8, self.crop_size, rng) if self.train else center_crop(lab8, self.crop_size)
        # Samples are read-only views of the shard's bytes; the crop becomes the tensor's own memory.
        return torch.from_numpy(np.require(crop, requirements=["C_CONTIGUOUS", "WRITEABLE"]))
