"""Training on the CPU with a small model on real shards (sandbox photos through the production stitch):
L1 falls, a stopped-and-resumed run reproduces an uninterrupted one exactly, SIGTERM leaves a usable
checkpoint, and two DDP processes (torchrun, gloo) train together."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from models.launch import command_line
from models.networks import build_generator
from models.train import PREEMPTED_EXIT_CODE, TrainConfig, Trainer, latest_checkpoint, load_checkpoint
from pipelines.catalog import Catalog, Image, utcnow
from pipelines.raw_zone import raw_key
from pipelines.shards import ShardParams, build_dataset
from pipelines.storage import FileStore
from sandbox.library import PhotoLibrary

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PHOTOS = 48


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(lake URL, dataset version): PHOTOS library photos at 72 px, most in train, a few in val."""
    root = tmp_path_factory.mktemp("train")
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
    from pipelines.catalog import Sighting

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
    manifest = build_dataset(store, catalog, params)
    return f"file://{store.root}", manifest["version"]


def small(lake: tuple[str, str], **overrides: object) -> TrainConfig:
    lake_url, version = lake
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


def test_a_small_model_learns(lake: tuple[str, str]) -> None:
    result = Trainer(small(lake, steps=40, eval_every=40, eval_batches=2)).fit()

    l1 = [step["loss_g_l1"] for step in result.losses]
    assert len(l1) == 40 and result.step == 40 and not result.preempted
    # Gray is already a fair guess for most photos, so L1 starts low; it still falls clearly in 40 steps.
    assert sum(l1[-10:]) / 10 < 0.92 * sum(l1[:10]) / 10, l1
    assert {"val_l1_ab", "val_psnr", "val_ssim", "val_colorfulness_ratio"} <= set(result.metrics)


def test_stopping_and_resuming_gives_the_losses_of_an_uninterrupted_run(lake: tuple[str, str]) -> None:
    # 12 training samples and batch 4: three batches per epoch, so the stop falls inside an epoch.
    uninterrupted = Trainer(small(lake, steps=14, seed=3)).fit()
    first_half = Trainer(small(lake, steps=8, seed=3)).fit()

    second_half = Trainer(small(lake, steps=14, seed=3, resume=first_half.run_id)).fit()

    assert [step for step in first_half.losses] == uninterrupted.losses[:8]
    assert second_half.losses == uninterrupted.losses[8:], "resumed losses differ from the uninterrupted run"


def test_sigterm_leaves_a_checkpoint_that_loads_and_resumes(lake: tuple[str, str], tmp_path: Path) -> None:
    lake_url, _ = lake
    command = command_line(small(lake, steps=100000, workers=2, log_every=5), gpus=0)
    log = (tmp_path / "train.log").open("w+")
    training = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "step 10/" not in (tmp_path / "train.log").read_text() and time.monotonic() < deadline:
        assert training.poll() is None, (tmp_path / "train.log").read_text()
        time.sleep(0.2)
    training.send_signal(signal.SIGTERM)

    assert training.wait(timeout=60) == PREEMPTED_EXIT_CODE
    output = (tmp_path / "train.log").read_text()
    assert "Traceback" not in output and "stopped by SIGTERM" in output
    run_id = json.loads(output.strip().splitlines()[-1])["run_id"]
    store = FileStore(Path(lake_url.removeprefix("file://")))
    state = load_checkpoint(store, latest_checkpoint(store, run_id))
    stopped_at = state["position"]["step"]
    assert stopped_at >= 10
    generator = build_generator(small(lake).networks())
    generator.load_state_dict(state["generator"])
    with torch.no_grad():
        assert generator.eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)

    resumed = Trainer(small(lake, steps=stopped_at + 2, resume=run_id)).fit()

    assert resumed.step == stopped_at + 2 and len(resumed.losses) == 2


def test_two_ddp_processes_train_together(lake: tuple[str, str], tmp_path: Path) -> None:
    lake_url, _ = lake
    # What the train_colorizer task runs on a node with two GPUs, here with two CPU processes (gloo).
    command = command_line(small(lake, steps=4, batch_size=2, eval_every=4, eval_batches=1), gpus=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and len({summary["run_id"] for summary in summaries}) == 1, "one run, two ranks"
    assert all(summary["step"] == 4 for summary in summaries)
    store = FileStore(Path(lake_url.removeprefix("file://")))
    assert load_checkpoint(store, latest_checkpoint(store, summaries[0]["run_id"]))["position"]["step"] == 4
