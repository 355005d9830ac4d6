"""The world-model recipe: a block-causal DiT learns the next frame of a recorded game from the past and the keys.

`kinema train world RECIPE` encodes every recorded frame once with a frozen per-frame VAE
(1x time, so each latent frame is one game frame and a key press shows up in the next latent),
then trains the one DiT in block-causal mode on windows of `data.frames` latent frames:

- every frame gets its own noise level (Diffusion Forcing), so the model learns to denoise a
  frame given a past at any noise level;
- in `context_prob` of the windows the past is instead nearly clean, noised only up to
  `context_sigma_max`, and the last chunk alone is noised fully: the situation the stream is in
  when it plays, with the context noise augmentation of GameNGen and DIAMOND, which keeps small
  errors in its own output from compounding;
- the action of each frame is embedded into that frame's time conditioning.

The result is a world pipeline folder, `vae/`, `dit/` and `kinema.json` (kind "world"), plus a
few real first frames to start from, which `kinema.generate.world` plays.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from kinema.config import DataConfig
from kinema.data.dataset import resize_crop, to_tensor
from kinema.data.manifest import ClipRecord, clip_path, read_manifest
from kinema.diffusion.flow import (
    TRAIN_MIN_SIGMA,
    add_noise,
    as_velocity,
    flow_loss,
    motion_weight,
    previous_frames,
    sample_sigmas,
    with_clean_past,
)
from kinema.generate.world import TEXT_DIM, WorldInfo, WorldModel, null_text, start_frames_of
from kinema.io import atomic_path, atomic_write_text
from kinema.io.video import read_video
from kinema.models.dit import DiTConfig, VideoDiT
from kinema.models.vae import load_vae
from kinema.train.loop import Logger, LoopConfig, TrainResult, local_device, train
from kinema.train.recipes import cache_provenance


@dataclass
class WorldOptions:
    """What the world model learns from, and how it is noised."""

    vae: str = "runs/vae_world/final"  # a trained per-frame VAE folder (temporal_downsample 1)
    chunk_frames: int = 1  # latent frames per block-causal chunk
    shift: float = 1.0
    timestep_mean: float = 0.0
    timestep_std: float = 1.0
    context_prob: float = 0.5  # windows with a nearly clean past; the rest are Diffusion Forcing
    context_sigma_max: float = 0.3  # context noise augmentation: the past's noise level is U(0, this)
    # Extra loss weight where the game moves: 1 + this x each latent pixel's change since the frame
    # before (capped at 1). A paddle is 0.4% of a Breakout screen but all that the keys change.
    motion_weight: float = 0.0
    # How the exported stream plays: steps per chunk, the context's noise level and the window.
    sample_steps: int = 4
    sample_context_sigma: float = 0.05
    # The past a frame sees while playing; with the frame itself it should fit the training window, and
    # sinks stay off: their distance to the newest frame keeps growing, past what RoPE saw in training.
    window_frames: int = 15
    sink_frames: int = 0


@dataclass
class WorldRecipe:
    """A world-model run: the recorded game, the DiT, the world options and the loop's settings."""

    data: DataConfig = field(default_factory=lambda: DataConfig(source="", frames=16, fps=15.0))
    dit: DiTConfig = field(
        default_factory=lambda: DiTConfig(
            text_dim=TEXT_DIM, num_layers=6, ffn_dim=768, num_attention_heads=3, attention_head_dim=64
        )
    )
    world: WorldOptions = field(default_factory=WorldOptions)
    train: LoopConfig = field(default_factory=LoopConfig)


class FrameCache(Dataset):
    """Every recorded frame's latent and action, kept in memory; item i is the i-th training window.

    An item also holds the latent of the frame just before its window (zeros, and `has_before`
    False, at a clip's start): frame stacking's condition for the window's first frame, which the
    stream has too, since its past always has a frame before it once the game is under way.
    """

    def __init__(self, path: str | Path, window: int) -> None:
        tensors = load_file(str(path))
        self.latents, self.actions, self.clip_starts = (
            tensors["latents"],
            tensors["actions"],
            tensors["starts"],
        )
        self.window = window
        self._starts = set(self.clip_starts.tolist())
        self.index = self._window_starts()
        if not len(self.index):
            raise ValueError(f"no clip in {path} has {window} frames, the training window")

    def _window_starts(self) -> torch.Tensor:
        """The first frame of every window that lies inside one clip."""
        bounds = [*self.clip_starts.tolist(), len(self.latents)]
        starts = [torch.arange(a, max(a, b - self.window + 1)) for a, b in itertools.pairwise(bounds)]
        return torch.cat(starts) if starts else torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        first = int(self.index[i])
        frames = slice(first, first + self.window)
        has_before = first not in self._starts
        before = self.latents[first - 1 : first] if has_before else torch.zeros_like(self.latents[:1])
        return {
            "latents": self.latents[frames].float().transpose(0, 1),
            "actions": self.actions[frames],
            "before": before.float().transpose(0, 1),
            "has_before": torch.tensor(has_before),
        }


@torch.no_grad()
def build_frame_cache(recipe: WorldRecipe, path: Path, progress: bool = True) -> FrameCache:
    """Encode every frame of every clip in the recording once with the frozen VAE.

    The cache records which VAE, recording and frame size made it; a cache made differently is
    rebuilt. The training window is not among them: the cache holds whole clips.
    """
    d = recipe.data
    provenance = {
        "vae": str(Path(recipe.world.vae).resolve()),
        "source": d.source,
        "size": [d.width, d.height],
    }
    if cache_provenance(path) == provenance:
        return FrameCache(path, recipe.data.frames)
    device = local_device()
    vae = load_vae(recipe.world.vae, device=device).eval()
    if vae.temporal_downsample != 1:
        raise ValueError(
            f"world.vae must encode frame by frame (temporal_downsample 1), got {vae.temporal_downsample}"
        )
    records = _game_records(recipe.data.source, recipe.dit.num_actions)
    latents, actions, starts, total = [], [], [], 0
    for record in tqdm(records, desc="encode", unit="clip", disable=not progress):
        frames, _ = read_video(clip_path(record, recipe.data.source))
        pixels = to_tensor(resize_crop(frames, recipe.data.width, recipe.data.height))[None].to(device)
        latents.append(vae.normalize(vae.encode(pixels).mean)[0].transpose(0, 1).half().cpu())
        actions.append(torch.tensor(record.actions[: len(frames)], dtype=torch.long))
        starts.append(total)
        total += len(frames)
    tensors = {"latents": torch.cat(latents), "actions": torch.cat(actions), "starts": torch.tensor(starts)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    atomic_write_text(path.with_suffix(".json"), json.dumps({"provenance": provenance}))
    return FrameCache(path, recipe.data.frames)


def _game_records(manifest: str, num_actions: int) -> list[ClipRecord]:
    """The recording's clips, checked to carry actions the DiT can embed."""
    if not manifest:
        raise ValueError("data.source must be a recording's manifest.jsonl (kinema data record --out DIR)")
    records = read_manifest(manifest)
    for record in records:
        if record.actions is None:
            raise ValueError(
                f"{manifest}: clip {record.path} has no actions; a world model needs a game recording"
            )
        if not all(isinstance(a, int) and 0 <= a < num_actions for a in record.actions):
            raise ValueError(
                f"{manifest}: clip {record.path} has actions outside 0..{num_actions - 1} (dit.num_actions)"
            )
    return records


def stacked_condition(
    batch: dict[str, torch.Tensor], noisy: torch.Tensor, sigma: torch.Tensor
) -> torch.Tensor:
    """Each frame's previous frame; the one before the window (`before`, where `has_before`) is noised
    like the window's first, and a window without one gets zeros, as the stream's first frame does."""
    if "before" not in batch:
        return previous_frames(noisy)
    before = batch["before"].to(noisy)
    before = add_noise(before, torch.randn_like(before), sigma[:, :1])
    known = batch["has_before"].to(noisy.device).view(-1, 1, 1, 1, 1)
    return previous_frames(noisy, torch.where(known, before, torch.zeros_like(before)))


class WorldTask:
    """Flow matching per frame, block-causal, conditioned on each frame's action."""

    def __init__(self, model: VideoDiT, options: WorldOptions) -> None:
        self.model, self.options = model, options

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The flow-matching loss over a batch of latent windows and their actions."""
        x0, actions = batch["latents"], batch["actions"]
        sigma, target = (t.to(x0.device) for t in self.noise_levels(len(x0), x0.shape[2]))
        noise = torch.randn_like(x0)
        noisy = add_noise(x0, noise, sigma)
        condition = stacked_condition(batch, noisy, sigma) if self.model.config.condition_channels else None
        output = model(
            noisy,
            sigma * 1000.0,
            null_text(len(x0), x0.device),
            condition=condition,
            actions=actions,
            attention="block_causal",
            chunk_frames=self.options.chunk_frames,
        )
        velocity = as_velocity(output, noisy, sigma, "velocity", TRAIN_MIN_SIGMA)
        strength = self.options.motion_weight
        weight = (
            motion_weight(x0, strength, batch.get("before"), batch.get("has_before")) if strength else None
        )
        return flow_loss(velocity, x0, noise, weight=weight, mask=target), {"sigma_mean": float(sigma.mean())}

    def noise_levels(self, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """σ per latent frame, (B, F): independent (Diffusion Forcing), or a nearly clean past and a noisy last chunk.

        Also the frames to learn, (B, F) bool: all but a nearly clean past.
        """
        o = self.options
        sigma = sample_sigmas((batch, frames), mean=o.timestep_mean, std=o.timestep_std, shift=o.shift)
        return with_clean_past(sigma, o.chunk_frames, o.context_prob, o.context_sigma_max)


def world_info(recipe: WorldRecipe, action_names: list[str]) -> WorldInfo:
    """How the exported world model plays: size, fps, actions and the stream's settings."""
    o = recipe.world
    return WorldInfo(
        width=recipe.data.width,
        height=recipe.data.height,
        fps=recipe.data.fps,
        action_names=action_names,
        chunk_frames=o.chunk_frames,
        steps=o.sample_steps,
        shift=o.shift,
        context_sigma=o.sample_context_sigma,
        window_frames=o.window_frames,
        sink_frames=o.sink_frames,
        previous_frame=bool(recipe.dit.condition_channels),
    )


def world_sampler(recipe: WorldRecipe, vae: nn.Module, action_names: list[str]):
    """A hook that replays a held recording's actions with the EMA model and logs PSNR against the truth."""
    records = read_manifest(recipe.data.source)[:2]
    truths, actions = [], []
    for record in records:
        frames, _ = read_video(clip_path(record, recipe.data.source))
        frames = resize_crop(frames, recipe.data.width, recipe.data.height)[: 2 * recipe.data.frames]
        truths.append(frames)
        actions.append(record.actions[: len(frames)])

    def on_sample(model: nn.Module, step: int, logger: Logger) -> None:
        was_training = model.training
        world = WorldModel(vae, model, world_info(recipe, action_names))
        made = [
            world.rollout(truth[0], acts[1:], seed=0) for truth, acts in zip(truths, actions, strict=True)
        ]
        model.train(was_training)
        errors = [
            ((m.astype(float) - t.astype(float)) ** 2).mean() for m, t in zip(made, truths, strict=True)
        ]
        logger.scalars(step, {"sample/rollout_psnr": 10 * math.log10(255**2 / max(np.mean(errors), 1e-10))})
        pairs = np.stack([np.concatenate([t, m], axis=2) for t, m in zip(truths, made, strict=True)])
        logger.videos(step, "rollout", pairs, recipe.data.fps)

    return on_sample


def train_world(recipe: WorldRecipe, resume: bool = False, progress: bool = True) -> TrainResult:
    """Cache the recording's latents, train the block-causal DiT on them, and export a world pipeline."""
    _check_world(recipe)
    out = Path(recipe.train.out_dir)
    cache = build_frame_cache(recipe, out / "cache" / "frames.safetensors", progress=progress)
    if cache.latents.shape[1] != recipe.dit.latent_channels:
        raise ValueError(
            f"the VAE gives {cache.latents.shape[1]} latent channels but the DiT takes {recipe.dit.latent_channels}"
        )
    names = _action_names(recipe)
    torch.manual_seed(recipe.train.seed)
    task = WorldTask(VideoDiT(recipe.dit), recipe.world)
    vae = load_vae(recipe.world.vae).eval()
    sampler = world_sampler(recipe, vae, names)
    result = train(task, cache, recipe.train, resume=resume, progress=progress, on_sample=sampler)
    result.ema.save_pretrained(out / "final")
    starts = start_frames_of(recipe.data.source, recipe.data.width, recipe.data.height)
    WorldModel(vae, result.ema, world_info(recipe, names)).save_pretrained(out / "pipeline", starts)
    return result


def _action_names(recipe: WorldRecipe) -> list[str]:
    """The recording's action names (recording.json beside the manifest), or numbers."""
    info = Path(recipe.data.source).parent / "recording.json"
    if info.is_file():
        names = json.loads(info.read_text(encoding="utf-8"))["action_names"]
        if len(names) == recipe.dit.num_actions:
            return names
    return [str(i) for i in range(recipe.dit.num_actions)]


def _check_world(recipe: WorldRecipe) -> None:
    """Raise ValueError naming the first setting a world model can't train with."""
    d, o = recipe.dit, recipe.world
    if d.num_actions < 1:
        raise ValueError("dit.num_actions must be the game's number of actions (recording.json lists them)")
    if d.text_dim != TEXT_DIM or d.condition_channels not in (0, d.latent_channels):
        raise ValueError(
            f"a world DiT takes no text (dit.text_dim={TEXT_DIM}), and its condition channels are 0 or the "
            f"previous frame's latent channels (dit.condition_channels = in_channels / 2), got {d.condition_channels}"
        )
    if d.patch_size[0] != 1:
        raise ValueError("dit.patch_size[0] must be 1: every latent frame has its own noise level and action")
    if o.chunk_frames < 1 or recipe.data.frames % o.chunk_frames or recipe.data.frames <= o.chunk_frames:
        raise ValueError(
            f"data.frames ({recipe.data.frames}) must be a multiple of world.chunk_frames ({o.chunk_frames}) "
            "and hold more than one chunk"
        )
    if not (0 <= o.context_prob <= 1 and 0 <= o.context_sigma_max < 1 and 0 <= o.sample_context_sigma < 1):
        raise ValueError("world.context_prob must be in [0, 1] and the context sigmas in [0, 1)")
    if o.motion_weight < 0:
        raise ValueError(f"world.motion_weight must be >= 0, got {o.motion_weight}")
    if o.sample_steps < 1:
        raise ValueError(f"world.sample_steps must be >= 1, got {o.sample_steps}")
