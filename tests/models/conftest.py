"""A small dataset version built by the production stitch from sandbox photos, and a training config
small enough for a 2-core CPU: what the model tests train, resume, register and serve."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from models.train import TrainConfig
from pipelines.catalog import Catalog, Image, Sighting, utcnow
from pipelines.raw_zone import raw_key
from pipelines.stitch import ShardParams, stitch_dataset
from pipelines.storage import FileStore
from sandbox.library import PhotoLibrary

PHOTOS = 48


@pytest.fixture(scope="session")
def dataset_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(lake URL, dataset version): PHOTOS library photos at 72 px, most in train, a few in val."""
    root = tmp_path_factory.mktemp("models")
    store = FileStore(root / "lake")
    catalog = Catalog(f"sqlite:///{root / 'catalog.db'}")
    catalog.migrate()
    library, shas = PhotoLibrary(), []
    with catalog.session() as session:
        for number in range(PHOTOS):
            data = library.encode(number * 7 % len(library.photos))
            sha256 = hashlib.sha256(data).hexdigest()
            shas.append(sha256)
            store.put(raw_key(sha256, "jpg"), data)
            row = {"sha256": sha256, "raw_key": raw_key(sha256, "jpg"), "format": "jpg", "byte_size": len(data)}
            catalog.upsert(session, Image, [{**row, "status": "accepted", "first_seen_at": utcnow()}], ["sha256"])
    with catalog.session() as session:
        sightings = [
            {
                "source": "unsplash",
                "source_id": str(n),
                "image_sha256": sha,
                "url": "https://x",
                "fetched_at": utcnow(),
                "run_id": "r",
            }
            for n, sha in enumerate(shas)
        ]
        catalog.upsert(session, Sighting, sightings, ["source", "source_id"])
    params = ShardParams(load_size=72, shard_size=16, split_ratios=(("train", 0.8), ("val", 0.2), ("test", 0.0)))
    manifest = stitch_dataset(store, catalog, params)
    return f"file://{store.root}", manifest["version"]


@pytest.fixture(scope="session")
def small(dataset_lake: tuple[str, str]) -> Callable[..., TrainConfig]:
    """`small(**overrides)`: a training config a 2-core CPU runs in seconds (ngf 8, 64 px crops)."""
    lake_url, version = dataset_lake

    def config(**overrides: object) -> TrainConfig:
        values = dict(
            dataset=version,
            lake_url=lake_url,
            steps=30,
            batch_size=4,
            crop_size=64,
            ngf=8,
            ndf=8,
            num_downs=6,
            workers=0,
            tracking=False,
            log_every=10,
            eval_every=1000,
            checkpoint_every=1000,
            lr_g=1e-3,
            lr_d=1e-3,
        )
        return TrainConfig(**{**values, **overrides})

    return config
