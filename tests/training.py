"""A small dataset version built by the production stitch from sandbox photos, a training config small enough
for a 2-core CPU, and a real MLflow server with a model registered from such a training: what the model tests
train, resume, register and serve, and what the Studio's tests colorize with. Registered as a plugin by the
root conftest; the server and the model are per test module, so one module's promotions never move
another's aliases."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest

from embedded.ports import running_mlflow
from models.registry import register_run
from models.train import TrainConfig, Trainer
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


def register_small_model(small: Callable[..., TrainConfig], tracking_uri: str, lake_url: str) -> dict:
    """One short tracked training run, evaluated and registered by the production code."""
    config = small(steps=6, tracking=True, eval_every=6, eval_batches=1)
    result = Trainer(config, tracking_uri=tracking_uri, tags={"dag_id": "test"}).fit()
    return register_run(result.run_id, tracking_uri, lake_url)


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mlflow(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@pytest.fixture(scope="module")
def registered(dataset_lake: tuple[str, str], small: Callable[..., TrainConfig], tracking_uri: str) -> dict:
    """The first model of the module's registry: champion."""
    return register_small_model(small, tracking_uri, dataset_lake[0])
