"""Training data from real shards (written by the production writer) on a local lake and on a real
S3-protocol server: scaling to and from the network's range, crops and flips, a stable order per epoch,
and every sample read exactly once per epoch however many workers read."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models.data import ShardStream, from_network, to_network
from pipelines.raw_zone import raw_key
from pipelines.settings import get_settings
from pipelines.stitch import DatasetImage, ShardSpec, publish, save_shard, write_shard
from pipelines.storage import FileStore, ObjectStore, S3Store
from sandbox.library import PhotoLibrary

LOAD, CROP, SAMPLES, SHARD_SIZE = 48, 32, 10, 3


def write_dataset(store: ObjectStore, catalog_path: Path) -> dict:
    """A published version of SAMPLES library photos, all in the train split, in shards of SHARD_SIZE."""
    from pipelines.catalog import Catalog, Image, utcnow

    library, members = PhotoLibrary(), []
    catalog = Catalog(f"sqlite:///{catalog_path}")
    catalog.migrate()
    for number in range(SAMPLES):
        data = library.encode(number)
        sha256 = f"{number:064x}"
        store.put(raw_key(sha256, "jpg"), data)
        members.append(DatasetImage(sha256, raw_key(sha256, "jpg"), "jpg", ("unsplash",), "train"))
        with catalog.session() as session:
            row = {"sha256": sha256, "raw_key": raw_key(sha256, "jpg"), "format": "jpg", "byte_size": len(data)}
            catalog.upsert(session, Image, [{**row, "status": "accepted", "first_seen_at": utcnow()}], ["sha256"])
    specs = [
        ShardSpec(f"datasets/test/train/train-{i:05d}.tar", "train", members[i : i + SHARD_SIZE])
        for i in range(0, SAMPLES, SHARD_SIZE)
    ]
    for spec in specs:
        save_shard(store, spec)
    shards = [write_shard(store, spec, LOAD) for spec in specs]
    plan = {
        "version": "test",
        "params": {"load_size": LOAD},
        "source_mix": {"unsplash": SAMPLES},
        "duplicates_dropped": 0,
    }
    return publish(store, catalog, plan, shards)


def stream_bytes(data: ShardStream, workers: int) -> list[bytes]:
    loader = DataLoader(data, batch_size=None, num_workers=workers)
    return [sample.numpy().tobytes() for sample in loader]


def test_network_scaling_round_trips() -> None:
    lab8 = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    lightness, ab = to_network(lab8)
    assert lightness.shape == (2, 1, 8, 8) and ab.shape == (2, 2, 8, 8)
    assert lightness.min() >= -1 and lightness.max() <= 1 and ab.abs().max() <= 1
    assert ab.stride(1) == 1 and lightness.stride(1) == 1, "views of NHWC memory: nothing was transposed"
    back = from_network(lightness, ab).astype(int)
    original = lab8.numpy().astype(int)
    assert np.array_equal(back[..., 0], original[..., 0])
    in_gamut = np.abs(original[..., 1:] - 128) <= 110
    assert np.abs(back[..., 1:] - original[..., 1:])[in_gamut].max() <= 1


def test_every_sample_once_per_epoch_with_any_number_of_workers(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "lake")
    manifest = write_dataset(store, tmp_path / "catalog.db")
    evaluation = ShardStream(f"file://{store.root}", manifest, crop_size=CROP, train=False)

    one, two = stream_bytes(evaluation, 0), stream_bytes(evaluation, 2)

    assert len(one) == len(evaluation) == SAMPLES and len(set(one)) == SAMPLES
    assert sorted(two) == sorted(one)
    assert stream_bytes(evaluation, 0) == one, "evaluation order is fixed"


def test_training_order_is_fixed_per_epoch_and_changes_between_epochs(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "lake")
    manifest = write_dataset(store, tmp_path / "catalog.db")
    training = ShardStream(f"file://{store.root}", manifest, crop_size=CROP, train=True, seed=7, shuffle_buffer=4)

    epoch_zero = stream_bytes(training, 2)
    again = stream_bytes(training, 2)
    training.set_epoch(1)
    epoch_one = stream_bytes(training, 2)

    assert epoch_zero == again
    assert epoch_one != epoch_zero and len(epoch_one) == SAMPLES
    assert all(np.frombuffer(sample, np.uint8).size == CROP * CROP * 3 for sample in epoch_one)


def test_crop_larger_than_the_samples_is_refused(tmp_path: Path) -> None:
    manifest = write_dataset(FileStore(tmp_path / "lake"), tmp_path / "catalog.db")
    with pytest.raises(ValueError, match="crop 49 is larger than the load size 48"):
        ShardStream(f"file://{tmp_path / 'lake'}", manifest, crop_size=LOAD + 1)
    with pytest.raises(ValueError, match="larger than the dataset's"):
        ShardStream(f"file://{tmp_path / 'lake'}", manifest, crop_size=16, load_size=LOAD + 1)


def test_a_smaller_load_size_scales_whole_samples_down(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "lake")
    manifest = write_dataset(store, tmp_path / "catalog.db")
    whole = ShardStream(f"file://{store.root}", manifest, crop_size=24, load_size=24, train=False)
    samples = [sample.numpy() for sample in DataLoader(whole, batch_size=None)]
    assert len(samples) == SAMPLES and all(sample.shape == (24, 24, 3) for sample in samples)


def test_streams_from_an_s3_lake(tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    manifest = write_dataset(S3Store(bucket, "colorflow", endpoint_url=s3_endpoint), tmp_path / "catalog.db")
    monkeypatch.setenv("COLORFLOW_S3_ENDPOINT_URL", s3_endpoint)
    get_settings.cache_clear()
    try:
        samples = stream_bytes(ShardStream(f"s3://{bucket}/colorflow", manifest, crop_size=CROP, train=False), 2)
    finally:
        get_settings.cache_clear()
    local = FileStore(tmp_path / "local")
    local_manifest = write_dataset(local, tmp_path / "local.db")
    assert manifest["shards"] == local_manifest["shards"], "the same bytes whatever the store"
    assert sorted(samples) == sorted(
        stream_bytes(ShardStream(f"file://{local.root}", local_manifest, crop_size=CROP, train=False), 0)
    )
