"""Start a training run the way the `train_colorizer` DAG does on a training node: `torchrun` with one
process per visible GPU, or one plain process when there is none. The child's output streams into this
process's log line by line (an Airflow task log shows progress as it happens), SIGTERM is passed on so the
trainer checkpoints before it stops, and its closing summary line comes back as a dict.

    summary = launch(TrainConfig(dataset="3f2a9c0d1e4b5a67", steps=20000))

The same from a shell, over every GPU of this machine: `colorflow train --dataset 3f2a9c0d1e4b5a67`.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

import torch

from models.train import PREEMPTED_EXIT_CODE, RUN_TAGS_VARIABLE, TrainConfig, add_config_arguments, config_from

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
TAIL_LINES = 20
PR_SET_PDEATHSIG = 1  # prctl(2)
_LIBC = ctypes.CDLL(None)  # loaded here: between fork and exec only the call itself may run

# What a node without a GPU trains: a narrow U-Net on whole photos scaled to 72 px (64 px crops), a few
# minutes on two cores. Enough to see the pipeline work end to end and the loss fall, not a useful model.
CPU_PROFILE: dict[str, Any] = {
    "ngf": 16,
    "ndf": 16,
    "num_downs": 6,
    "load_size": 72,
    "crop_size": 64,
    "batch_size": 8,
    "steps": 300,
    "workers": 1,
    "log_every": 25,
    "eval_every": 100,
    "checkpoint_every": 100,
    "eval_batches": 2,
}


class TrainingFailed(RuntimeError):
    """The trainer exited with an error; the message carries the end of its output."""


class TrainingPreempted(RuntimeError):
    """The trainer stopped on SIGTERM after a checkpoint; running it again with `resume` continues."""


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def for_this_node(config: TrainConfig, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """`config` as given on a GPU node; on a CPU-only node, the small profile (explicit overrides win)."""
    changes = {} if visible_gpus() else dict(CPU_PROFILE)
    changes.update(overrides or {})
    return dataclasses.replace(config, **changes)


def command_line(config: TrainConfig, gpus: int) -> list[str]:
    """The command that trains `config`: torchrun over `gpus` processes, or python itself."""
    launcher = (
        [str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc-per-node={gpus}"]
        if gpus > 1
        else [sys.executable]
    )
    arguments = []
    for spec in dataclasses.fields(TrainConfig):
        value = getattr(config, spec.name)
        flag = f"--{spec.name.replace('_', '-')}"
        if isinstance(value, bool):
            arguments.append(flag if value else f"--no-{spec.name.replace('_', '-')}")
        elif value != "":
            arguments += [flag, str(value)]
    return [*launcher, "-m", "models.train", *arguments]


def _stop_with_parent() -> None:
    """In the trainer, before it starts: SIGTERM it when the task process dies, even by SIGKILL, so that a
    killed task leaves no orphan training on beside its retry; SIGTERM makes the trainer checkpoint and
    stop, and the retry resumes from there."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(config: TrainConfig, tags: dict[str, str] | None = None, env: dict[str, str] | None = None) -> dict:
    """Run training to the end; returns the trainer's summary (run id, step, checkpoint, last metrics)."""
    command = command_line(config, visible_gpus())
    logger.info("starting: %s", " ".join(command))
    child_env = {**os.environ, **(env or {}), RUN_TAGS_VARIABLE: json.dumps(tags or {})}
    child = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        preexec_fn=_stop_with_parent,
    )
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    summary: dict[str, Any] = {}
    try:
        for line in child.stdout:
            line = line.rstrip()
            tail.append(line)
            if line.startswith("{") and '"run_id"' in line:
                summary = json.loads(line)
            else:
                logger.info("%s", line)
        code = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == PREEMPTED_EXIT_CODE:
        raise TrainingPreempted(
            f"training stopped by SIGTERM at step {summary.get('step')}; run {summary.get('run_id')}"
        )
    if code != 0:
        raise TrainingFailed(f"training exited with {code}:\n" + "\n".join(tail))
    return summary


def git_commit() -> str:
    """The code's commit, for the run's tags: from the environment in images, from git in a checkout."""
    if os.environ.get("COLORFLOW_GIT_COMMIT"):
        return os.environ["COLORFLOW_GIT_COMMIT"]
    try:
        found = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    return found.stdout.strip() or "unknown"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`colorflow train`: the trainer's options, launched over every visible GPU."""
    add_config_arguments(parser)
    parser.set_defaults(run=lambda args: run(parser, args))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Train to the end and print the summary; 143 when preempted (run it again with --resume)."""
    try:
        summary = launch(config_from(parser, args), tags={"launched_by": "colorflow train", "git_commit": git_commit()})
    except TrainingPreempted as stopped:
        print(stopped, file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except TrainingFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0
