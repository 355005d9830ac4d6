"""One training loop for every recipe, in the spirit of nanoGPT's: plain, explicit, resumable.

A recipe hands the loop a `Task` (the model and how to compute its loss on a batch) and a
dataset. The loop owns everything else: AdamW with no decay on norms and biases, warmup plus
cosine, gradient clipping and accumulation, EMA, bf16 autocast on CUDA, checkpoints that resume
bit for bit, TensorBoard and JSONL logs, a progress bar, and torchrun/accelerate processes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from kinema.io import write_video
from kinema.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


@dataclass
class LoopConfig:
    """How a run optimises; the `train` section of a recipe."""

    out_dir: str = "runs/default"
    seed: int = 0
    batch_size: int = 8  # per process, per micro-step
    grad_accum: int = 1
    steps: int = 10_000  # optimizer steps
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 turns clipping off
    ema_decay: float = 0.999
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 3
    sample_every: int = 0  # 0: only at the end

    def __post_init__(self) -> None:
        for name in ("batch_size", "grad_accum", "steps", "log_every", "checkpoint_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers", "sample_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                f"train.lr must be positive and min_lr_ratio in [0, 1], got {self.lr}, {self.min_lr_ratio}"
            )
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"train.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"train.precision must be auto, fp32 or bf16, got '{self.precision}'")


class Task(Protocol):
    """What a recipe optimises: a model, and its loss on one batch."""

    model: nn.Module

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss to minimise, and named parts to log; `model` may be DDP-wrapped."""
        ...


@dataclass
class Runtime:
    """Where this process runs: device, rank and world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        """Whether this is the process that writes checkpoints and logs."""
        return self.rank == 0


def local_device() -> torch.device:
    """This process's GPU (by torchrun's LOCAL_RANK) when CUDA is available, else the CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")


def setup_runtime() -> Runtime:
    """Join the process group that torchrun or accelerate set up through the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = local_device()
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Runtime(device, rank, world_size)


class EpochBatches(Sampler[list[int]]):
    """Endless batches of indices, reshuffled each epoch from (seed, epoch), sharded across ranks.

    Its position is (epoch, batch): a resumed run starts exactly where the saved one stopped.
    """

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.batches_per_epoch = length // (batch_size * world_size)
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"dataset of {length} items is smaller than one global batch of {batch_size * world_size}"
            )
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.batch = 0, 0

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        epoch, batch = self.epoch, self.batch
        while True:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + epoch))
            shard = order[self.rank :: self.world_size]
            for b in range(batch, self.batches_per_epoch):
                yield shard[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            epoch, batch = epoch + 1, 0

    def position_after(self, consumed: int) -> dict[str, int]:
        """The (epoch, batch) reached after `consumed` more batches from the current position."""
        total = self.epoch * self.batches_per_epoch + self.batch + consumed
        return {"epoch": total // self.batches_per_epoch, "batch": total % self.batches_per_epoch}


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices and kernels, none on norms, biases, embeddings' 1-D tables."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(config: LoopConfig) -> Callable[[int], float]:
    """The learning-rate multiplier at each step: linear warmup, then cosine to min_lr_ratio."""

    def multiplier(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine

    return multiplier


def ema_with_warmup(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], Any], None]:
    """An EMA update whose decay after n updates is min(decay, (1 + n) / (10 + n)).

    A fixed 0.999 would keep half its weight on the first 700 steps' random-ish weights until
    step 700 and more; the warmup lets early weights fade fast, as diffusers' EMAModel does.
    """

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: Any) -> None:
        n = int(num_averaged)
        weight = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:  # integer buffers, e.g. counters
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)

    return update


def autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast on CUDA (or when asked for), plain fp32 otherwise."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()


class Logger:
    """Scalars to metrics.jsonl and, when it is installed, TensorBoard; only the main process writes."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled, self.path, self.tensorboard = enabled, out_dir / "metrics.jsonl", None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # TensorBoard is optional; the JSONL log always exists
                pass

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Log named values at a step."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tensorboard:
            for name, value in values.items():
                self.tensorboard.add_scalar(name, value, step)

    def videos(self, step: int, name: str, clips: np.ndarray, fps: float) -> Path | None:
        """Write uint8 (N, T, H, W, 3) clips side by side to samples/NAME_STEP.mp4, and their
        first, middle and last frames to TensorBoard as an image."""
        if not self.enabled:
            return None
        tiled = np.concatenate(list(clips), axis=2)
        path = write_video(self.path.parent / "samples" / f"{name}_{step:08d}.mp4", tiled, fps)
        if self.tensorboard:
            strip = np.concatenate([tiled[0], tiled[len(tiled) // 2], tiled[-1]], axis=0)
            self.tensorboard.add_image(name, strip, step, dataformats="HWC")
        return path

    def close(self) -> None:
        """Flush everything to disk."""
        if self.tensorboard:
            self.tensorboard.close()


@dataclass
class TrainResult:
    """What a finished run left behind."""

    step: int
    checkpoint: Path | None
    ema: nn.Module
    last_loss: float


def train(
    task: Task,
    dataset: Dataset,
    config: LoopConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    collate_fn: Callable | None = None,
    on_sample: Callable[[nn.Module, int, Logger], None] | None = None,
) -> TrainResult:
    """Optimise `task.model` on `dataset` for `config.steps` steps; see the module docstring."""
    runtime = setup_runtime()
    out_dir = Path(config.out_dir)
    torch.manual_seed(config.seed + runtime.rank)
    model = task.model.to(runtime.device)
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=True)
    wrapped = nn.parallel.DistributedDataParallel(model) if runtime.world_size > 1 else model
    optimizer = torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.lr, betas=(config.beta1, config.beta2)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config))
    sampler = EpochBatches(len(dataset), config.batch_size, config.seed, runtime.rank, runtime.world_size)
    step = first_step = (
        _resume(out_dir, model, ema, optimizer, scheduler, sampler, runtime.rank) if resume else 0
    )
    # Its own generator: a DataLoader otherwise draws its worker seed from the global RNG, which a
    # resumed run has just restored, and the two runs would part ways.
    worker_seeds = torch.Generator().manual_seed(config.seed + step)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=collate_fn,
        generator=worker_seeds,
    )
    batches, consumed = iter(loader), 0
    logger = Logger(out_dir, runtime.main)
    bar = tqdm(
        total=config.steps, initial=step, desc="train", unit="step", disable=not (progress and runtime.main)
    )
    checkpoint, loss_value, started = None, math.nan, time.perf_counter()
    try:
        while step < config.steps:
            parts = _optimizer_step(wrapped, task, batches, optimizer, config, runtime)
            consumed += config.grad_accum
            scheduler.step()
            ema.update_parameters(model)
            step += 1
            loss_value = parts["loss"]
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step % config.log_every == 0 or step == config.steps:
                rate = (step - first_step) / (time.perf_counter() - started)
                logger.scalars(step, {**parts, "lr": scheduler.get_last_lr()[0], "steps_per_s": rate})
            if step % config.checkpoint_every == 0 or step == config.steps:
                state = _state(model, ema, optimizer, scheduler, sampler.position_after(consumed))
                checkpoint = _save(out_dir, step, state, config.keep_last, runtime)
            sample_now = (config.sample_every and step % config.sample_every == 0) or step == config.steps
            if on_sample and sample_now and runtime.main:
                on_sample(ema.module, step, logger)
    finally:
        bar.close()
        logger.close()
    return TrainResult(step, checkpoint, ema.module, loss_value)


def _optimizer_step(
    model: nn.Module,
    task: Task,
    batches: Iterator[Any],
    optimizer: torch.optim.Optimizer,
    config: LoopConfig,
    runtime: Runtime,
) -> dict[str, float]:
    """Accumulate gradients over grad_accum micro-batches, clip, and step; return the mean parts."""
    totals: dict[str, float] = {}
    for micro in range(config.grad_accum):
        batch = _to_device(next(batches), runtime.device)
        # Only the last micro-batch needs DDP's gradient all-reduce.
        sync = micro == config.grad_accum - 1 or not isinstance(model, nn.parallel.DistributedDataParallel)
        with autocast(runtime.device, config.precision), nullcontext() if sync else model.no_sync():
            loss, parts = task.loss(model, batch)
            (loss / config.grad_accum).backward()
        for name, value in {"loss": float(loss.detach()), **parts}.items():
            totals[name] = totals.get(name, 0.0) + value / config.grad_accum
    if not math.isfinite(totals["loss"]):
        raise FloatingPointError(f"loss is {totals['loss']}; stopping before it reaches the weights")
    if config.grad_clip > 0:
        totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return totals


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _state(model, ema, optimizer, scheduler, data_position: dict[str, int]) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data": data_position,
    }


def _save(out_dir: Path, step: int, state: dict[str, Any], keep_last: int, runtime: Runtime) -> Path:
    """Rank 0 writes, with every rank's RNG states; everyone waits, so no rank runs ahead of it."""
    if dist.is_initialized():
        ranks: list[Any] = [None] * runtime.world_size
        dist.all_gather_object(ranks, rng_state())
        state = {**state, "rng_ranks": ranks}
    path = save_checkpoint(out_dir / "checkpoints", step, state, keep_last) if runtime.main else None
    if dist.is_initialized():
        dist.barrier()
    return path or out_dir / "checkpoints" / f"step_{step:08d}.pt"


def _resume(out_dir: Path, model, ema, optimizer, scheduler, sampler: EpochBatches, rank: int) -> int:
    """Load the newest checkpoint into everything, this rank's RNG included; return its step (0 if none)."""
    path = latest_checkpoint(out_dir / "checkpoints")
    if path is None:
        return 0
    state = load_checkpoint(path)
    if "rng_ranks" in state:
        set_rng_state(state["rng_ranks"][rank])
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    sampler.epoch, sampler.batch = state["data"]["epoch"], state["data"]["batch"]
    return int(state["step"])
