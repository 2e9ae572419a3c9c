"""Training on the CPU with a small model on real shards (sandbox photos through the production stitch):
L1 falls, a stopped-and-resumed run reproduces an uninterrupted one exactly, SIGTERM leaves a usable
checkpoint, and two DDP processes (torchrun, gloo) train together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from embedded.polling import wait_until
from models.launch import command_line
from models.networks import build_generator
from models.train import PREEMPTED_EXIT_CODE, TrainConfig, Trainer, latest_checkpoint, load_checkpoint
from pipelines.lake_lifecycle import INTERMEDIATE_CHECKPOINT_TAGS, expire, lake_rules
from pipelines.settings import LifecycleSettings
from pipelines.storage import FileStore

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_a_small_model_learns(dataset_lake: tuple[str, str], small: Callable[..., TrainConfig]) -> None:
    result = Trainer(small(steps=40, eval_every=40, eval_batches=2)).fit()

    l1 = [step["loss_g_l1"] for step in result.losses]
    assert len(l1) == 40 and result.step == 40 and not result.preempted
    # Gray is already a fair guess for most photos, so L1 starts low; it still falls clearly in 40 steps.
    assert sum(l1[-10:]) / 10 < 0.92 * sum(l1[:10]) / 10, l1
    assert {"val_l1_ab", "val_psnr", "val_ssim", "val_colorfulness_ratio"} <= set(result.metrics)


def test_stopping_and_resuming_gives_the_losses_of_an_uninterrupted_run(
    dataset_lake: tuple[str, str], small: Callable[..., TrainConfig]
) -> None:
    # 12 training samples and batch 4: three batches per epoch, so the stop falls inside an epoch.
    uninterrupted = Trainer(small(steps=14, seed=3)).fit()
    first_half = Trainer(small(steps=8, seed=3)).fit()

    second_half = Trainer(small(steps=14, seed=3, resume=first_half.run_id)).fit()

    assert [step for step in first_half.losses] == uninterrupted.losses[:8]
    assert second_half.losses == uninterrupted.losses[8:], "resumed losses differ from the uninterrupted run"


def test_sigterm_leaves_a_checkpoint_that_loads_and_resumes(
    dataset_lake: tuple[str, str], small: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    lake_url, _ = dataset_lake
    command = command_line(small(steps=100000, workers=2, log_every=5), gpus=0)
    log = (tmp_path / "train.log").open("w+")
    training = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)

    def ten_steps_in() -> bool:
        assert training.poll() is None, (tmp_path / "train.log").read_text()
        return "step 10/" in (tmp_path / "train.log").read_text()

    wait_until(ten_steps_in, timeout_s=120, interval_s=0.2, what="ten training steps")
    training.send_signal(signal.SIGTERM)

    assert training.wait(timeout=60) == PREEMPTED_EXIT_CODE
    output = (tmp_path / "train.log").read_text()
    assert "Traceback" not in output and "stopped by SIGTERM" in output
    run_id = json.loads(output.strip().splitlines()[-1])["run_id"]
    store = FileStore(Path(lake_url.removeprefix("file://")))
    state = load_checkpoint(store, latest_checkpoint(store, run_id))
    stopped_at = state["position"]["step"]
    assert stopped_at >= 10
    generator = build_generator(small().networks())
    generator.load_state_dict(state["generator"])
    with torch.no_grad():
        assert generator.eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)

    resumed = Trainer(small(steps=stopped_at + 2, resume=run_id)).fit()

    assert resumed.step == stopped_at + 2 and len(resumed.losses) == 2


def test_a_finished_run_leaves_only_its_final_checkpoint_to_keep(
    dataset_lake: tuple[str, str], small: Callable[..., TrainConfig]
) -> None:
    """A run stopped part-way tags nothing, so it can resume; once it has trained all its steps, the lake's
    housekeeping deletes every checkpoint but the one a model is registered from, after their days."""
    store = FileStore(Path(dataset_lake[0].removeprefix("file://")))
    stopping = Trainer(small(steps=6, checkpoint_every=2))
    train_step = stopping.train_step

    def train_then_stop(batch: torch.Tensor) -> dict[str, float]:
        stopping.stop_requested = stopping.position.step == 2  # what SIGTERM sets, during the third step
        return train_step(batch)

    stopping.train_step = train_then_stop
    stopped = stopping.fit()
    checkpoints = f"checkpoints/{stopped.run_id}/"
    assert stopped.preempted and [store.tags(key) for key in store.list(checkpoints) if key.endswith(".pt")] == [{}, {}]

    finished = Trainer(small(steps=6, checkpoint_every=2, resume=stopped.run_id)).fit()

    final = latest_checkpoint(store, finished.run_id)
    assert final == finished.checkpoint_key == f"{checkpoints}step-00000006.pt"
    tagged = {key: store.tags(key) for key in store.list(checkpoints) if key.endswith(".pt")}
    assert tagged == {
        **{f"{checkpoints}step-{step:08d}.pt": INTERMEDIATE_CHECKPOINT_TAGS for step in (2, 3, 4)},
        final: {},
    }
    expire(store, lake_rules(LifecycleSettings()), now=datetime.now(UTC) + timedelta(days=31))
    assert list(store.list(checkpoints)) == [f"{checkpoints}latest.json", final]


def test_two_ddp_processes_train_together(
    dataset_lake: tuple[str, str], small: Callable[..., TrainConfig], tmp_path: Path
) -> None:
    lake_url, _ = dataset_lake
    # What the train_colorizer task runs on a node with two GPUs, here with two CPU processes (gloo).
    command = command_line(small(steps=4, batch_size=2, eval_every=4, eval_batches=1), gpus=2)
    # Unbuffered, as under Airflow and CI: the ranks' summary lines must still come out whole.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 2 and len({summary["run_id"] for summary in summaries}) == 1, "one run, two ranks"
    assert all(summary["step"] == 4 for summary in summaries)
    store = FileStore(Path(lake_url.removeprefix("file://")))
    assert load_checkpoint(store, latest_checkpoint(store, summaries[0]["run_id"]))["position"]["step"] == 4


def test_a_run_without_checkpoints_is_named_in_the_error(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"run 0123abcd has no checkpoint: file://.*/checkpoints/0123abcd/latest"
    ):
        latest_checkpoint(store, "0123abcd")


def test_resuming_a_finished_run_trains_and_writes_nothing(
    dataset_lake: tuple[str, str], small: Callable[..., TrainConfig]
) -> None:
    finished = Trainer(small(steps=4)).fit()
    store = FileStore(Path(dataset_lake[0].removeprefix("file://")))
    before = {key: store.get(key) for key in store.list(f"checkpoints/{finished.run_id}/")}

    again = Trainer(small(steps=4, resume=finished.run_id)).fit()

    assert again.step == 4 and again.losses == [] and again.checkpoint_key == finished.checkpoint_key
    assert {key: store.get(key) for key in store.list(f"checkpoints/{finished.run_id}/")} == before
