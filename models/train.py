"""Train the pix2pix colorizer on a dataset version of Lab shards.

One process (the CPU, or one GPU):
    python -m models.train --dataset 3f2a9c0d1e4b5a67 --steps 20000 --batch-size 16
Every GPU of a node (DDP; the batch size is per GPU):
    torchrun --standalone --nproc-per-node gpu -m models.train --dataset 3f2a9c0d1e4b5a67 --steps 20000
Resume a run where its last checkpoint left it (the same MLflow run goes on):
    python -m models.train --dataset 3f2a9c0d1e4b5a67 --steps 20000 --resume <mlflow run id>

Checkpoints go to the lake, `checkpoints/<run id>/`, every `checkpoint_every` steps and at the end. They
hold everything an exact resume needs: both networks, both optimizers, the step, the data position (epoch
and batches read in it) and every RNG. A resumed run produces the same losses as one never stopped. SIGTERM
(preemption, `airflow tasks` timeouts) finishes the step in flight, writes a checkpoint and exits with 143,
so a scheduler knows to resume it. On CUDA the step runs in bf16 autocast with channels_last tensors (bf16
needs no gradient scaler, so there is none to save).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import random
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.data import ShardStream, from_network, to_network
from models.losses import LAMBDA_L1, GANLoss, discriminator_loss, generator_loss
from models.metrics import colorization_metrics, sample_grid
from models.networks import NetworkConfig, build_discriminator, build_generator, colorize_ab
from models.tracking import Tracker
from pipelines.lake_lifecycle import INTERMEDIATE_CHECKPOINT_TAGS
from pipelines.stitch import load_manifest
from pipelines.storage import ObjectStore, open_store

logger = logging.getLogger(__name__)

RUN_TAGS_VARIABLE = "COLORFLOW_RUN_TAGS"
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a process stopped by SIGTERM
CHECKPOINT_NAME = re.compile(r"step-\d{8}\.pt")  # save_checkpoint's names


def option(default: Any, help: str) -> Any:
    """A config field with the help text the CLI shows."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that decides a training run; logged to MLflow whole, so a run can be repeated."""

    dataset: str = option("", "dataset version to train on (datasets/<version>/manifest.json in the lake)")
    lake_url: str = option("", "lake holding the dataset and checkpoints (default: the configured lake)")
    steps: int = option(2000, "optimizer steps to train for (counted over all epochs)")
    batch_size: int = option(16, "images per step and process: pix2pix used 1; 16 keeps a GPU busy")
    load_size: int = option(0, "scale samples to this side before cropping (0: as stored, 286)")
    crop_size: int = option(256, "random crop side; the U-Net needs a multiple of 2**num_downs")
    ngf: int = option(64, "generator width (filters of the outermost layer)")
    ndf: int = option(64, "discriminator width (filters of the first layer)")
    num_downs: int = option(8, "U-Net depth: 8 for 256 px crops, 6 for 64 px")
    n_layers_d: int = option(3, "PatchGAN layers: 3 gives 70x70 patches")
    norm: str = option("batch", "batch or instance normalization (batch becomes SyncBatchNorm under DDP)")
    gan_mode: str = option("vanilla", "adversarial loss: vanilla (cross-entropy, the paper's) or lsgan")
    lambda_l1: float = option(LAMBDA_L1, "weight of the L1 term against the adversarial one")
    lr_g: float = option(2e-4, "generator learning rate (Adam)")
    lr_d: float = option(2e-4, "discriminator learning rate (Adam)")
    beta1: float = option(0.5, "Adam beta1: 0.5 as in DCGAN and pix2pix, steadier for GANs")
    beta2: float = option(0.999, "Adam beta2")
    workers: int = option(4, "data loader processes per training process")
    amp: bool = option(True, "bf16 autocast on CUDA (ignored on the CPU)")
    channels_last: bool = option(True, "NHWC memory on CUDA, what tensor cores want (ignored on the CPU)")
    compile: bool = option(False, "torch.compile both networks (slow first steps, faster after)")
    checkpoint_every: int = option(500, "steps between checkpoints")
    eval_every: int = option(500, "steps between validations (val split metrics and a sample grid)")
    eval_batches: int = option(4, "validation batches per evaluation")
    log_every: int = option(50, "steps between logged training metrics")
    seed: int = option(0, "seed for weights, dropout and data order")
    resume: str = option("", "MLflow run id to resume from its last checkpoint")
    tracking: bool = option(True, "report to the MLflow tracking server")
    experiment: str = option("colorizer", "MLflow experiment of a new run")
    run_name: str = option("", "MLflow run name of a new run")

    def networks(self) -> NetworkConfig:
        return NetworkConfig(
            ngf=self.ngf, ndf=self.ndf, num_downs=self.num_downs, n_layers_d=self.n_layers_d, norm=self.norm
        )


@dataclass
class TrainResult:
    run_id: str
    step: int
    preempted: bool
    checkpoint_key: str
    losses: list[dict[str, float]] = field(default_factory=list)  # one entry per step this process ran
    metrics: dict[str, float] = field(default_factory=dict)  # the last validation


@dataclass
class Position:
    """Where training stands: the step, and the data stream's epoch and batches read in it."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def checkpoint_prefix(run_id: str) -> str:
    return f"checkpoints/{run_id}/"


class Trainer:
    """One training process: networks, optimizers, data, checkpoints and reporting. Under torchrun every
    rank builds one; only rank 0 writes checkpoints and reports."""

    def __init__(self, config: TrainConfig, tracking_uri: str = "", tags: dict[str, str] | None = None) -> None:
        self.config = config
        self.rank, self.world = _init_distributed()
        self.device = _device()
        self.lake_url = config.lake_url or _configured_lake()
        self.store: ObjectStore = open_store(self.lake_url)
        self.manifest = load_manifest(self.store, config.dataset)
        self.channels_last = self.device.type == "cuda" and config.channels_last
        torch.manual_seed(config.seed)  # the same initial weights on every rank (DDP also broadcasts them)
        random.seed(config.seed)
        net = config.networks()
        self.generator = self._prepare(build_generator(net))
        self.discriminator = self._prepare(build_discriminator(net))
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_d, betas=betas)
        self.gan_loss = GANLoss(config.gan_mode)
        self.autocast = self.device.type == "cuda" and config.amp
        self.position = Position()
        self.resumed_checkpoint = ""  # the checkpoint a resumed run started from
        self.stop_requested = False
        # Different dropout noise per rank: identical masks on every GPU would waste the extra data.
        torch.manual_seed(config.seed + 1000 + self.rank)
        leader = self.rank == 0
        self.tracker = Tracker(
            enabled=config.tracking and leader,
            tracking_uri=tracking_uri,
            experiment=config.experiment,
            run_id=config.resume,
            run_name=config.run_name,
            tags=tags,
        )
        self.run_id = self._shared_run_id(self.tracker.run_id)
        if config.resume:
            self._load_checkpoint()
        elif leader:
            self.tracker.log_params({**asdict(config), "world_size": self.world, "device": self.device.type})
            self.tracker.set_tags({"device": _device_name(self.device), "world_size": str(self.world)})
            self.tracker.log_dataset(self.manifest, self.store)

    def _prepare(self, network: nn.Module) -> nn.Module:
        if self.world > 1 and self.config.norm == "batch" and self.device.type == "cuda":  # SyncBN is CUDA-only
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        network = network.to(self.device)
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        if self.world > 1:
            network = DistributedDataParallel(
                network, device_ids=[self.device.index] if self.device.index is not None else None
            )
        if self.config.compile:
            network = torch.compile(network)
        return network

    def _shared_run_id(self, run_id: str) -> str:
        """Rank 0 owns the MLflow run; every rank needs its id (checkpoints are keyed by it)."""
        if self.world == 1:
            return run_id
        holder = [run_id]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    # -- data -------------------------------------------------------------------------------------------

    def _loader(self, split: str, train: bool) -> DataLoader:
        stream = ShardStream(
            self.lake_url,
            self.manifest,
            split=split,
            crop_size=self.config.crop_size,
            train=train,
            seed=self.config.seed,
        )
        return DataLoader(
            stream,
            batch_size=self.config.batch_size,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=train,
            persistent_workers=False,
            worker_init_fn=_ignore_sigterm,
            # Its own generator: drawing worker seeds from the global RNG would shift the dropout noise
            # of a resumed run against an uninterrupted one.
            generator=torch.Generator().manual_seed(self.config.seed),
            prefetch_factor=4 if self.config.workers else None,
        )

    def batches(self) -> Iterator[torch.Tensor]:
        """Training batches forever, epoch after epoch, starting at the saved position (batches already
        consumed in the saved epoch are read again and skipped, which keeps the order exact)."""
        loader = self._loader("train", train=True)
        while True:
            loader.dataset.set_epoch(self.position.epoch)
            seen = 0
            for batch in loader:
                seen += 1
                if seen <= self.position.batch_in_epoch:
                    continue
                self.position.batch_in_epoch = seen
                yield batch
            if seen == 0:
                raise RuntimeError(
                    f"the train split of dataset {self.config.dataset} has fewer than {self.config.batch_size} "
                    "samples per process: lower --batch-size or build a larger dataset"
                )
            self.position.epoch += 1
            self.position.batch_in_epoch = 0

    # -- one step ---------------------------------------------------------------------------------------

    def train_step(self, lab8: torch.Tensor) -> dict[str, float]:
        """One step on a batch from the loader (uint8 Lab, scaled on the device)."""
        return self.optimize(*to_network(lab8.to(self.device, non_blocking=True)))

    def optimize(self, lightness: torch.Tensor, real_ab: torch.Tensor) -> dict[str, float]:
        """pix2pix's alternating update: D on real and (detached) fake pairs, then G to fool D and match L1."""
        if self.channels_last:
            lightness = lightness.contiguous(memory_format=torch.channels_last)
            real_ab = real_ab.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            fake_ab = self.generator(lightness)
        # Discriminator.
        _set_requires_grad(self.discriminator, True)
        self.opt_d.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            real_logits = self.discriminator(torch.cat([lightness, real_ab], dim=1))
            fake_logits = self.discriminator(torch.cat([lightness, fake_ab.detach()], dim=1))
        loss_d = discriminator_loss(self.gan_loss, real_logits, fake_logits)
        loss_d.backward()
        self.opt_d.step()
        # Generator: D is frozen (no gradients for its weights) and, under DDP, called unwrapped so its
        # gradient hooks do not expect a reduction that never comes.
        _set_requires_grad(self.discriminator, False)
        self.opt_g.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            fake_logits = _unwrapped(self.discriminator)(torch.cat([lightness, fake_ab], dim=1))
        loss_g, loss_adv, loss_l1 = generator_loss(
            self.gan_loss, fake_logits, fake_ab, real_ab, lambda_l1=self.config.lambda_l1
        )
        loss_g.backward()
        self.opt_g.step()
        return {
            "loss_d": loss_d.item(),
            "loss_g": loss_g.item(),
            "loss_g_gan": loss_adv.item(),
            "loss_g_l1": loss_l1.item(),
        }

    # -- the run ----------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        config = self.config
        previous_handler = signal.signal(signal.SIGTERM, self._request_stop)
        losses: list[dict[str, float]] = []
        metrics: dict[str, float] = {}
        checkpoint_key = self.resumed_checkpoint
        status = "FAILED"
        window = {"started": time.perf_counter(), "waited": 0.0, "images": 0}
        resumed_at = self.position.step
        progress = tqdm(
            total=config.steps,
            initial=self.position.step,
            desc="training",
            unit="step",
            disable=self.rank != 0 or not sys.stderr.isatty(),  # logs get the periodic step lines instead
            dynamic_ncols=True,
            mininterval=2.0,
        )
        try:
            batches = self.batches()
            while self.position.step < config.steps and not self.stop_requested:
                waited = time.perf_counter()
                batch = next(batches)
                window["waited"] += time.perf_counter() - waited
                step_losses = self.train_step(batch)
                self.position.step += 1
                losses.append(step_losses)
                window["images"] += batch.shape[0] * self.world
                progress.update(1)
                progress.set_postfix(l1=f"{step_losses['loss_g_l1']:.3f}", d=f"{step_losses['loss_d']:.3f}")
                step = self.position.step
                if step % config.log_every == 0 or step == config.steps:
                    self._log_training(step_losses, window)
                if step % config.eval_every == 0 or step == config.steps:
                    metrics = self.evaluate()
                if step % config.checkpoint_every == 0 and step < config.steps:
                    checkpoint_key = self.save_checkpoint()
            if self.position.step > resumed_at or not checkpoint_key:  # else resumed with nothing left to train
                checkpoint_key = self.save_checkpoint()
            if self.stop_requested:
                logger.warning(
                    "stopped by SIGTERM at step %d; resume with --resume %s", self.position.step, self.run_id
                )
                status = "KILLED"
            else:
                self._log_final(checkpoint_key)
                if self.rank == 0:
                    mark_intermediate_checkpoints(self.store, self.run_id)
                status = "FINISHED"
        finally:
            progress.close()
            signal.signal(signal.SIGTERM, previous_handler)
            self.tracker.end(status)
        return TrainResult(self.run_id, self.position.step, self.stop_requested, checkpoint_key, losses, metrics)

    def _request_stop(self, signum: int, frame: object) -> None:
        logger.warning("SIGTERM: finishing step %d, then checkpointing", self.position.step + 1)
        self.stop_requested = True

    def _log_training(self, step_losses: dict[str, float], window: dict[str, float]) -> None:
        elapsed = time.perf_counter() - window["started"]
        throughput = {
            "images_per_second": window["images"] / max(elapsed, 1e-9),
            # The share of time spent waiting for data: near 0 means the loader keeps up.
            "data_wait_fraction": window["waited"] / max(elapsed, 1e-9),
        }
        window.update(started=time.perf_counter(), waited=0.0, images=0)
        if self.rank == 0:
            self.tracker.log_metrics({**step_losses, **throughput}, step=self.position.step)
            logger.info(
                "step %d/%d: %s, %.1f images/s",
                self.position.step,
                self.config.steps,
                " ".join(f"{name} {value:.4f}" for name, value in step_losses.items()),
                throughput["images_per_second"],
            )

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Metrics on the first `eval_batches` of the val split (center crops, fixed order) and a grid."""
        if self.rank != 0:
            _barrier(self.world)
            return {}
        generator = _unwrapped(self.generator)
        predicted, truth = [], []
        for number, lab8 in enumerate(self._loader("val", train=False)):
            if number >= self.config.eval_batches:
                break
            lightness, _ = to_network(lab8.to(self.device))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                fake_ab = colorize_ab(generator, lightness)
            predicted.append(from_network(lightness, fake_ab))
            truth.append(lab8.numpy())
        if not predicted:
            logger.warning("the val split is empty: no validation metrics")
            _barrier(self.world)
            return {}
        metrics = {
            f"val_{name}": value
            for name, value in colorization_metrics(np.concatenate(predicted), np.concatenate(truth)).items()
        }
        self.tracker.log_metrics(metrics, step=self.position.step)
        self.tracker.log_image(
            sample_grid(np.concatenate(predicted), np.concatenate(truth)), f"samples/step-{self.position.step:07d}.png"
        )
        logger.info(
            "validation at step %d: %s", self.position.step, json.dumps({k: round(v, 4) for k, v in metrics.items()})
        )
        _barrier(self.world)
        return metrics

    # -- checkpoints ------------------------------------------------------------------------------------

    def save_checkpoint(self) -> str:
        """Write the full training state to the lake (rank 0) and point `latest.json` at it."""
        key = f"{checkpoint_prefix(self.run_id)}step-{self.position.step:08d}.pt"
        if self.rank == 0:
            state = {
                "format": 1,
                "config": asdict(self.config),
                "position": asdict(self.position),
                "generator": _unwrapped(self.generator).state_dict(),
                "discriminator": _unwrapped(self.discriminator).state_dict(),
                "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(),
                "rng": _rng_state(),
            }
            buffer = io.BytesIO()
            torch.save(state, buffer)
            self.store.put(key, buffer.getvalue())
            self.store.put(f"{checkpoint_prefix(self.run_id)}latest.json", json.dumps({"key": key}).encode())
            logger.info("checkpoint at step %d: %s", self.position.step, self.store.uri(key))
        _barrier(self.world)
        return key

    def _load_checkpoint(self) -> None:
        key = self.resumed_checkpoint = latest_checkpoint(self.store, self.run_id)
        state = load_checkpoint(self.store, key, self.device)
        _unwrapped(self.generator).load_state_dict(state["generator"])
        _unwrapped(self.discriminator).load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.position = Position(**state["position"])
        _set_rng_state(state["rng"], self.device)
        logger.info("resumed run %s at step %d from %s", self.run_id, self.position.step, key)

    def _log_final(self, checkpoint_key: str) -> None:
        if self.rank == 0 and self.tracker.enabled:
            self.tracker.log_bytes(self.store.get(checkpoint_key), f"checkpoints/{checkpoint_key.rsplit('/', 1)[1]}")


def latest_checkpoint(store: ObjectStore, run_id: str) -> str:
    """The key of a run's newest checkpoint; a clear error when the run never wrote one."""
    pointer = f"{checkpoint_prefix(run_id)}latest.json"
    if not store.exists(pointer):
        raise FileNotFoundError(f"run {run_id} has no checkpoint: {store.uri(pointer)} does not exist")
    return json.loads(store.get(pointer))["key"]


def mark_intermediate_checkpoints(store: ObjectStore, run_id: str) -> int:
    """Tag every checkpoint of a run that trained all its steps as intermediate, but the one `latest.json` names
    (what `models.registry.register_run` registers), so the lake's lifecycle rule deletes them after their days
    (`pipelines.lake_lifecycle`). A run stopped by SIGTERM is not marked: it resumes from its last checkpoint.
    Returns how many were tagged; tagging again is harmless."""
    final = latest_checkpoint(store, run_id)
    intermediate = [
        key
        for key in store.list(checkpoint_prefix(run_id))
        if CHECKPOINT_NAME.fullmatch(key.rsplit("/", 1)[1]) and key != final
    ]
    for key in intermediate:
        store.set_tags(key, INTERMEDIATE_CHECKPOINT_TAGS)
    logger.info("%d intermediate checkpoints of run %s tagged for expiry; %s is kept", len(intermediate), run_id, final)
    return len(intermediate)


def load_checkpoint(store: ObjectStore, key: str, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint's state. `weights_only=True`: a checkpoint is data, and loading one never runs code."""
    return torch.load(io.BytesIO(store.get(key)), map_location=device, weights_only=True)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state_all([rng.cpu() for rng in state["cuda"]])


def _set_requires_grad(network: nn.Module, flag: bool) -> None:
    for parameter in network.parameters():
        parameter.requires_grad_(flag)


def _unwrapped(network: nn.Module) -> nn.Module:
    """The plain module inside torch.compile and DDP wrappers."""
    network = getattr(network, "_orig_mod", network)
    return network.module if isinstance(network, DistributedDataParallel) else network


def _ignore_sigterm(worker_id: int) -> None:
    """Loader workers leave SIGTERM to the trainer, which stops between steps and then shuts them down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _device() -> torch.device:
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)"


def _configured_lake() -> str:
    from pipelines.settings import get_settings

    return get_settings().lake_url


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per config field, with its help and default (`python -m models.train`, `colorflow train`)."""
    for spec in dataclasses.fields(TrainConfig):
        flag = f"--{spec.name.replace('_', '-')}"
        if spec.type in ("bool", bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=spec.default, help=spec.metadata["help"]
            )
        else:
            kind = {"int": int, "float": float}.get(str(spec.type), str)
            parser.add_argument(
                flag, type=kind, default=spec.default, help=f"{spec.metadata['help']} (default: %(default)s)"
            )


def config_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TrainConfig:
    """The config the parsed options describe; a clear error without a dataset."""
    if not args.dataset:
        parser.error("--dataset is required: the version printed by build_dataset or `colorflow dataset build`")
    names = {spec.name for spec in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in names})


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """The trainer's own command line (one process, or one rank under torchrun)."""
    parser = argparse.ArgumentParser(
        prog="python -m models.train",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    return config_from(parser, parser.parse_args(argv))


def _print_summary(summary: dict[str, Any]) -> None:
    """The closing summary line in one write: under torchrun every rank prints its own to the same pipe, and
    print() writes the newline apart from the text when stdout is unbuffered (PYTHONUNBUFFERED), so two
    ranks' lines could run together into one that no JSON parser reads. A pipe write under PIPE_BUF bytes
    is atomic."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps(summary) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = parse_config(argv)
    from pipelines.settings import get_settings

    # Launchers (the train_colorizer DAG) say who started the run; MLflow keeps it as tags.
    tags = json.loads(os.environ.get(RUN_TAGS_VARIABLE, "{}"))
    result = Trainer(config, tracking_uri=get_settings().mlflow_tracking_uri, tags=tags).fit()
    if dist.is_initialized():
        dist.destroy_process_group()
    _print_summary(
        {"run_id": result.run_id, "step": result.step, "checkpoint": result.checkpoint_key, **result.metrics}
    )
    return PREEMPTED_EXIT_CODE if result.preempted else 0


if __name__ == "__main__":
    sys.exit(main())
