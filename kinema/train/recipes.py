"""What each recipe optimises: the VAE on pixels, and the text-to-video DiT on cached latents.

`kinema train vae RECIPE` and `kinema train t2v RECIPE` load a recipe into the dataclasses
here, build a Task and a dataset, and hand both to the one loop in `kinema.train.loop`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from kinema.config import DataConfig, Recipe, find_recipe
from kinema.data.dataset import make_dataset, make_loader, to_frames, to_tensor
from kinema.data.shapes import make_clip
from kinema.diffusion.flow import (
    TRAIN_MIN_SIGMA,
    add_noise,
    as_velocity,
    correlate_frames,
    drop_prompts,
    flow_loss,
    motion_weight,
    noise_settings_problem,
    sample_sigmas,
    with_clean_past,
)
from kinema.errors import ConfigError
from kinema.eval.reconstruction import HELD_OUT_SEED
from kinema.generate.pipeline import (
    Pipeline,
    PipelineInfo,
    condition_problem,
    first_frame_channels,
    first_frame_condition,
    stack_previous_frame,
)
from kinema.io import atomic_path, atomic_write_text
from kinema.models.dit import ATTENTION_MODES, DiTConfig, VideoDiT
from kinema.models.losses import vae_loss
from kinema.models.text import TextEncoder, load_text_encoder
from kinema.models.vae import CausalVAE, VAEConfig, load_vae
from kinema.train.loop import Logger, LoopConfig, TrainResult, local_device, train


@dataclass
class VAELoss:
    """Weights of the VAE's loss terms."""

    kl_weight: float = 1e-6
    freq_weight: float = 0.5
    stats_batches: int = 16  # batches the latent scale and shift are measured on after training


@dataclass
class VAERecipe:
    """A VAE run: data, model, loss weights and the loop's settings."""

    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    loss: VAELoss = field(default_factory=VAELoss)
    train: LoopConfig = field(default_factory=LoopConfig)
    init: str = ""  # a saved VAE folder to fine-tune from; its config must equal `vae`


@dataclass
class T2VOptions:
    """What the text-to-video DiT learns from, and how it is noised."""

    vae: str = "runs/vae/final"  # a trained VAE folder (ours, or a diffusers Wan VAE)
    text_encoder: str = "minilm"  # or a local T5/UMT5 folder
    num_clips: int = 4000  # clips encoded once into the latent cache
    prompt_dropout: float = 0.1
    shift: float = 1.0  # timestep shift while training (1: plain logit-normal)
    # How often a clip is conditioned on its own first frame (image-to-video); 0 trains text-only.
    # Needs dit.condition_channels = latent channels + 1 (a mask channel, then the frame's latent).
    first_frame_prob: float = 0.0
    # Joint image-video training, as Wan's: this fraction of batches are images, each clip's first
    # latent frame alone (a causal VAE encodes it alone). A pipeline trained so draws its first pass
    # (sample_first_frame_steps) as one image, not a whole clip.
    image_prob: float = 0.0
    timestep_mean: float = 0.0
    timestep_std: float = 1.0
    # What the DiT outputs: "velocity" (Wan's), or "sample", the clean latents (x-prediction, as JiT).
    # A token can only reproduce as many independent values as it is wide; clean latents are far more
    # redundant than noise, so x-prediction lets a token carry a patch larger than the model's width.
    prediction: str = "velocity"
    # The fraction of its noise variance every latent frame shares (0: independent frames). Sampling
    # then starts from noise correlated the same way, so the frames agree on where things are.
    noise_correlation: float = 0.0
    # The fraction of clips whose latent frames each get their own noise level (Diffusion Forcing);
    # the rest share one. A frame then often has to be rebuilt from cleaner neighbours, which is
    # how a model learns what the next frame of a motion looks like.
    frame_sigma_prob: float = 0.0
    # Weights each latent pixel's loss by 1 + motion_weight x its change since the previous frame, so
    # the few pixels where objects move are not drowned by a still background (as world.motion_weight).
    motion_weight: float = 0.0
    # The exported pipeline's default sampling steps (kinema.json), e.g. fewer to fit a time budget.
    sample_steps: int = 20
    # The exported pipeline's default first_frame_steps: with first_frame_prob > 0, sampling can first
    # draw a clip and make the video from its first frame (kinema generate --first-frame-steps); 0 is off.
    sample_first_frame_steps: int = 0
    # "block_causal" trains a streaming model for `kinema stream`: a chunk of `chunk_frames` latent
    # frames sees itself and the chunks before it, never after. Combine it with frame_sigma_prob (a
    # noise level per frame) and `context_prob`: the fraction of clips whose past is nearly clean,
    # noised up to `context_sigma_max`, while only the last chunk is noised fully, as when streaming.
    attention: str = "bidirectional"
    chunk_frames: int = 1
    context_prob: float = 0.0
    context_sigma_max: float = 0.3
    stream_context_sigma: float = 0.0  # how noisy a finished chunk is when the stream caches it
    # Frame stacking, as the world models do: each latent frame also gets its previous frame, as noisy
    # as it is, in dit.latent_channels more condition channels after any first-frame ones. Keeping
    # what stays still is then a local copy (docs/training.md says what it changed and what not).
    previous_frame: bool = False
    # A saved DiT folder to start from; its config must equal the dit section, but it may gain a frame
    # table (dit.frame_positions). A streaming model fine-tuned from a bidirectional one keeps what
    # that one learned (CausVid's initialisation).
    init: str = ""


@dataclass
class T2VRecipe:
    """A text-to-video run: data, DiT, training options and the loop's settings."""

    data: DataConfig = field(default_factory=DataConfig)
    dit: DiTConfig = field(default_factory=lambda: DiTConfig(text_dim=384, num_layers=6, ffn_dim=1024))
    t2v: T2VOptions = field(default_factory=T2VOptions)
    train: LoopConfig = field(default_factory=LoopConfig)


def recipe_schema(recipe: str | Path) -> type:
    """The dataclass a recipe fits, by its sections: world, dit (T2V), vae, analysis (curation), else data."""
    from kinema.train.world import WorldRecipe  # it builds on this module

    sections = set(OmegaConf.load(find_recipe(recipe)).keys())
    if "world" in sections:
        return WorldRecipe
    if "analysis" in sections:
        from kinema.data.curate.recipe import CurateRecipe  # the curate extra, only when asked for

        return CurateRecipe
    return T2VRecipe if "dit" in sections else VAERecipe if "vae" in sections else Recipe


class VAETask:
    """Reconstruct clips through a sampled latent: L1 + frequency + KL."""

    def __init__(self, model: CausalVAE, weights: VAELoss) -> None:
        self.model, self.weights = model, weights

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """The VAE loss on a batch of videos."""
        recon, posterior = model(batch["video"])
        loss, parts = vae_loss(
            recon, batch["video"], posterior, self.weights.kl_weight, self.weights.freq_weight
        )
        return loss, {name: float(value) for name, value in parts.items() if name != "loss"}


class T2VTask:
    """Rectified flow on cached latents: predict the velocity noise − x0 from x_σ, σ and the prompt."""

    def __init__(
        self, model: VideoDiT, options: T2VOptions, null_states: torch.Tensor, null_mask: torch.Tensor
    ):
        self.model, self.options = model, options
        self.null_states, self.null_mask = null_states, null_mask

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The flow-matching loss on a batch of latents with their prompts (some dropped to empty)."""
        x0 = batch["latents"]
        opts = self.options
        image = bool(opts.image_prob) and bool(torch.rand(()) < opts.image_prob)
        if image:
            x0 = x0[:, :, :1]
        sigma, target = self.noise_levels(len(x0), x0.shape[2])
        sigma, target = sigma.to(x0.device), None if target is None else target.to(x0.device)
        noise = torch.randn_like(x0)
        if opts.noise_correlation:
            noise = correlate_frames(noise, torch.randn_like(x0[:, :, :1]), opts.noise_correlation)
        states, mask = drop_prompts(
            batch["text_states"],
            batch["text_mask"],
            self.null_states.to(x0.device),
            self.null_mask.to(x0.device),
            p=opts.prompt_dropout,
        )
        condition = None
        if first_frame_channels(self.model.config, opts.previous_frame):
            # An image is never given itself as its first frame.
            keep = (torch.rand(len(x0), device=x0.device) < opts.first_frame_prob) & (not image)
            condition = first_frame_condition(x0[:, :, :1], keep, frames=x0.shape[2])
        noisy = add_noise(x0, noise, sigma)
        denoiser = stack_previous_frame(model) if opts.previous_frame else model
        output = denoiser(
            noisy,
            sigma * 1000.0,
            states,
            text_mask=mask,
            condition=condition,
            attention=opts.attention,
            chunk_frames=opts.chunk_frames,
        )
        velocity = as_velocity(output, noisy, sigma, opts.prediction, TRAIN_MIN_SIGMA)
        weight = motion_weight(x0, opts.motion_weight) if opts.motion_weight else None
        loss = flow_loss(velocity, x0, noise, weight=weight, mask=target)
        parts = {"sigma_mean": float(sigma.mean())}
        return loss, parts | ({"image_batch": float(image)} if opts.image_prob else {})

    def noise_levels(self, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """σ per clip, (B,), or per latent frame, (B, F), when some clips draw one for each frame; and
        the frames to learn, (B, F) bool, all but a nearly clean past (None: every frame)."""
        opts = self.options
        draw = functools.partial(
            sample_sigmas, mean=opts.timestep_mean, std=opts.timestep_std, shift=opts.shift
        )
        sigma = draw((batch,))
        if not opts.frame_sigma_prob:
            return sigma, None
        own = torch.rand(batch) < opts.frame_sigma_prob
        sigma = torch.where(own[:, None], draw((batch, frames)), sigma[:, None])
        return with_clean_past(sigma, opts.chunk_frames, opts.context_prob, opts.context_sigma_max)


class LatentCache(Dataset):
    """Normalised latents and prompt embeddings of a dataset, encoded once and kept in memory."""

    def __init__(self, path: str | Path) -> None:
        tensors = load_file(str(path))
        self.latents, self.text_states, self.text_mask = (
            tensors["latents"],
            tensors["text_states"],
            tensors["text_mask"],
        )
        self.captions = json.loads(Path(path).with_suffix(".json").read_text(encoding="utf-8"))["captions"]

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "latents": self.latents[index].float(),
            "text_states": self.text_states[index].float(),
            "text_mask": self.text_mask[index],
        }


@torch.no_grad()
def build_latent_cache(
    recipe: T2VRecipe, path: Path, encoder: TextEncoder | None = None, progress: bool = True
) -> LatentCache:
    """Encode `t2v.num_clips` clips with the frozen VAE and their captions with the text encoder, once.

    The cache records which VAE, encoder and data made it; a cache made differently is rebuilt.
    """
    provenance = {"vae": str(Path(recipe.t2v.vae).resolve()), "text_encoder": recipe.t2v.text_encoder}
    data = json.loads(json.dumps(dataclasses.asdict(recipe.data)))
    provenance |= {"num_clips": recipe.t2v.num_clips, "data": data}
    if cache_provenance(path) == provenance:
        return LatentCache(path)
    device = local_device()
    vae = load_vae(recipe.t2v.vae, device=device).eval()
    encoder = encoder or load_text_encoder(recipe.t2v.text_encoder, device=device)
    dataset = make_dataset(recipe.data, seed=recipe.train.seed)
    if len(dataset) < recipe.t2v.num_clips:
        raise ValueError(
            f"the data has {len(dataset)} clips, fewer than t2v.num_clips={recipe.t2v.num_clips}"
        )
    loader = make_loader(
        dataset, batch_size=16, num_workers=recipe.data.num_workers, shuffle=False, drop_last=False
    )
    latents, states, masks, captions = [], [], [], []
    bar = tqdm(total=recipe.t2v.num_clips, desc="encode", unit="clip", disable=not progress)
    for batch in loader:
        take = min(len(batch["video"]), recipe.t2v.num_clips - len(captions))
        video = batch["video"][:take].to(device)
        latents.append(vae.normalize(vae.encode(video).mean).half().cpu())
        text, mask = encoder.encode(list(batch["caption"][:take]))
        states.append(text.half().cpu())
        masks.append(mask.cpu())
        captions += list(batch["caption"][:take])
        bar.update(take)
        if len(captions) >= recipe.t2v.num_clips:
            break
    bar.close()
    tensors = {"latents": torch.cat(latents), "text_states": torch.cat(states), "text_mask": torch.cat(masks)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    atomic_write_text(path.with_suffix(".json"), json.dumps({"provenance": provenance, "captions": captions}))
    return LatentCache(path)


def cache_provenance(path: Path) -> dict[str, Any] | None:
    """What the cache at `path` was built from, or None if there is no complete cache."""
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    return json.loads(meta_path.read_text(encoding="utf-8")).get("provenance")


SAMPLE_CLIPS = 4
SAMPLE_FRAMES = 17  # samples show whole clips, whatever window length the VAE trains on
SAMPLE_PROMPTS = (
    "a red circle moving right",
    "a blue square growing on a gray background",
    "a green triangle rotating and a yellow circle bouncing",
    "a white square moving up",
)


def _held_out_clips(data: DataConfig, frames: int) -> torch.Tensor:
    """Fixed clips to watch reconstructions on, (N, C, T, H, W) in [-1, 1].

    The shapes world's test split (`frames` long), which training never renders; for footage, the
    dataset's first clips, as long as training's.
    """
    if data.source != "shapes":
        dataset = make_dataset(data, train=False)
        return torch.stack([dataset[i]["video"] for i in range(min(SAMPLE_CLIPS, len(dataset)))])
    shapes = dataclasses.replace(
        data.shapes, width=data.width, height=data.height, frames=frames, split="test"
    )
    return torch.stack(
        [to_tensor(make_clip(shapes, i, seed=HELD_OUT_SEED).frames) for i in range(SAMPLE_CLIPS)]
    )


def vae_sampler(recipe: VAERecipe) -> Callable[[nn.Module, int, Logger], None]:
    """A hook that reconstructs held-out clips with the EMA model, logging PSNR and writing the videos."""
    frames = 1 + recipe.vae.temporal_downsample * ((SAMPLE_FRAMES - 1) // recipe.vae.temporal_downsample)
    clips = _held_out_clips(recipe.data, frames)

    @torch.no_grad()
    def on_sample(model: nn.Module, step: int, logger: Logger) -> None:
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        recon = model.decode(model.encode(clips.to(device)).mean).clamp(-1, 1).cpu()
        model.train(was_training)
        mse = ((recon - clips) / 2).square().mean().item()
        logger.scalars(step, {"sample/psnr": 10 * math.log10(1 / max(mse, 1e-10))})
        pairs = torch.cat([clips, recon], dim=-1)  # original | reconstruction
        logger.videos(step, "reconstruction", np.stack([to_frames(clip) for clip in pairs]), recipe.data.fps)

    return on_sample


def pipeline_info(recipe: T2VRecipe) -> PipelineInfo:
    """What a pipeline trained by this recipe makes by default: its clips' size, length, fps and shift."""
    return PipelineInfo(
        text_encoder=recipe.t2v.text_encoder,
        width=recipe.data.width,
        height=recipe.data.height,
        frames=recipe.data.frames,
        fps=recipe.data.fps,
        shift=recipe.t2v.shift,
        steps=recipe.t2v.sample_steps,
        first_frame_steps=recipe.t2v.sample_first_frame_steps,
        first_frame_alone=recipe.t2v.image_prob > 0,
        prediction=recipe.t2v.prediction,
        noise_correlation=recipe.t2v.noise_correlation,
        attention=recipe.t2v.attention,
        chunk_frames=recipe.t2v.chunk_frames,
        stream_context_sigma=recipe.t2v.stream_context_sigma,
        previous_frame=recipe.t2v.previous_frame,
    )


def t2v_sampler(
    recipe: T2VRecipe, vae: nn.Module, encoder: TextEncoder
) -> Callable[[nn.Module, int, Logger], None]:
    """A hook that generates the sample prompts with the EMA model and writes the videos."""
    info = pipeline_info(recipe)

    def on_sample(model: nn.Module, step: int, logger: Logger) -> None:
        was_training = model.training
        pipeline = Pipeline(vae, model, encoder, info)
        clips = np.stack([pipeline.generate(prompt, seed=i) for i, prompt in enumerate(SAMPLE_PROMPTS)])
        model.train(was_training)
        logger.videos(step, "samples", clips, recipe.data.fps)

    return on_sample


def train_vae(recipe: VAERecipe, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train the VAE, then measure its latent scale and shift and save the EMA weights to out_dir/final."""
    torch.manual_seed(recipe.train.seed)
    model = _initial_vae(recipe)
    dataset = make_dataset(recipe.data, seed=recipe.train.seed)
    task = VAETask(model, recipe.loss)
    result = train(
        task, dataset, recipe.train, resume=resume, progress=progress, on_sample=vae_sampler(recipe)
    )
    final = result.ema.eval()
    loader = make_loader(dataset, batch_size=recipe.train.batch_size, num_workers=0, seed=1, shuffle=True)
    batches = (batch for _, batch in zip(range(recipe.loss.stats_batches), loader, strict=False))
    final.measure_latent_stats(batches)
    final.save_pretrained(Path(recipe.train.out_dir) / "final")
    return result


def _initial_vae(recipe: VAERecipe) -> CausalVAE:
    """A fresh VAE, or the one in `recipe.init` to fine-tune (which must have the recipe's shape)."""
    if not recipe.init:
        return CausalVAE(recipe.vae)
    _check_init(recipe.init, "init", "VAE")
    model = CausalVAE.from_pretrained(recipe.init).train()
    _check_same_config(recipe.init, "vae", model.config, recipe.vae)
    return model


def _initial_dit(recipe: T2VRecipe) -> VideoDiT:
    """A fresh DiT, or the one in `t2v.init` to fine-tune (which must have the recipe's shape)."""
    if not recipe.t2v.init:
        return VideoDiT(recipe.dit)
    _check_init(recipe.t2v.init, "t2v.init", "DiT")
    # A model trained without a frame table can gain one (dit.frame_positions) and learn it here.
    saved = json.loads((Path(recipe.t2v.init) / "config.json").read_text(encoding="utf-8"))
    gains = {}
    if recipe.dit.frame_positions and not saved.get("frame_positions"):
        gains["frame_positions"] = recipe.dit.frame_positions
    model = VideoDiT.from_pretrained(recipe.t2v.init, dtype=torch.float32, **gains).train()
    _check_same_config(recipe.t2v.init, "dit", model.config, recipe.dit)
    return model


def _check_init(folder: str, key: str, what: str) -> None:
    if not (Path(folder) / "config.json").is_file():
        raise ConfigError(f"{key}: no saved {what} at {folder} (a folder with config.json)")


def _check_same_config(folder: str, section: str, saved: Any, wanted: Any) -> None:
    """Raise ConfigError naming every key where a saved model's config differs from the recipe's."""
    saved, wanted = dataclasses.asdict(saved), dataclasses.asdict(wanted)
    differ = sorted(k for k in wanted if saved[k] != wanted[k])
    if differ:
        details = ", ".join(f"{section}.{k}: recipe {wanted[k]}, saved {saved[k]}" for k in differ)
        raise ConfigError(f"init {folder} does not match the recipe's {section} section ({details})")


def train_t2v(recipe: T2VRecipe, resume: bool = False, progress: bool = True) -> TrainResult:
    """Cache latents and prompt embeddings, train the DiT on them, and save the EMA weights to out_dir/final."""
    out = Path(recipe.train.out_dir)
    encoder = load_text_encoder(recipe.t2v.text_encoder, device=local_device())
    cache = build_latent_cache(recipe, out / "cache" / "latents.safetensors", encoder, progress=progress)
    null_states, null_mask = encoder.empty()
    _check_dit_fits(recipe, encoder, latent_channels=cache.latents.shape[1])
    torch.manual_seed(recipe.train.seed)
    model = _initial_dit(recipe)
    task = T2VTask(model, recipe.t2v, null_states, null_mask)
    vae = load_vae(recipe.t2v.vae).eval()
    sampler = t2v_sampler(recipe, vae, encoder)
    result = train(task, cache, recipe.train, resume=resume, progress=progress, on_sample=sampler)
    result.ema.save_pretrained(out / "final")
    # A ready-to-run (and ready-to-ship) fp16 pipeline: kinema generate --model OUT/pipeline.
    Pipeline(vae, result.ema, encoder, pipeline_info(recipe)).save_pretrained(out / "pipeline")
    return result


def _check_dit_fits(recipe: T2VRecipe, encoder: TextEncoder, latent_channels: int) -> None:
    """Raise ValueError if the DiT can't take this encoder's text or these latents; warn if too narrow."""
    dit = recipe.dit
    if dit.text_dim != encoder.dim:
        raise ValueError(f"dit.text_dim is {dit.text_dim} but the {encoder.name} encoder gives {encoder.dim}")
    if dit.in_channels - dit.condition_channels != latent_channels:
        raise ValueError(
            f"the VAE gives {latent_channels} latent channels but the DiT takes "
            f"{dit.in_channels - dit.condition_channels} (dit.in_channels - dit.condition_channels)"
        )
    _check_condition(recipe.t2v, dit)
    problem = noise_settings_problem(recipe.t2v.prediction, recipe.t2v.noise_correlation)
    if problem:
        raise ValueError(f"t2v.{problem}")
    if recipe.t2v.sample_steps < 1 or recipe.t2v.sample_first_frame_steps < 0:
        raise ValueError(
            f"t2v.sample_steps must be >= 1 and t2v.sample_first_frame_steps >= 0, got "
            f"{recipe.t2v.sample_steps} and {recipe.t2v.sample_first_frame_steps}"
        )
    if recipe.t2v.motion_weight < 0:
        raise ValueError(f"t2v.motion_weight must be >= 0, got {recipe.t2v.motion_weight}")
    if not 0.0 <= recipe.t2v.frame_sigma_prob <= 1.0:
        raise ValueError(f"t2v.frame_sigma_prob must be in [0, 1], got {recipe.t2v.frame_sigma_prob}")
    if not 0.0 <= recipe.t2v.image_prob <= 1.0:
        raise ValueError(f"t2v.image_prob must be in [0, 1], got {recipe.t2v.image_prob}")
    if recipe.t2v.image_prob and (dit.patch_size[0] != 1 or recipe.t2v.attention != "bidirectional"):
        raise ValueError(
            "t2v.image_prob > 0 needs dit.patch_size[0] = 1 and t2v.attention=bidirectional: "
            "an image is one latent frame, which a stream already draws on its own"
        )
    if recipe.t2v.frame_sigma_prob and dit.patch_size[0] != 1:
        raise ValueError(
            "t2v.frame_sigma_prob > 0 needs dit.patch_size[0] = 1: a noise level per latent frame"
        )
    _check_causal(recipe.t2v, dit)
    values = latent_channels * math.prod(dit.patch_size)
    if values >= dit.dim and recipe.t2v.prediction == "velocity":
        # The output layer maps dim features to a patch's values, so it can reach only a dim-wide
        # subspace of them: the rest of the noise in the velocity target is lost, and the loss stalls.
        warnings.warn(
            f"each DiT token carries {values} latent values but the model is {dit.dim} wide, so its "
            "loss will stall well above zero: use smaller patches, a wider model or t2v.prediction=sample",
            stacklevel=2,
        )


def _check_condition(opts: T2VOptions, dit: DiTConfig) -> None:
    """Raise ValueError unless the condition channels fit a first frame (when trained) and the previous frame."""
    problem = condition_problem(dit, opts.previous_frame)
    if problem:
        raise ValueError(f"dit.{problem}")
    wanted = dit.latent_channels + 1
    if opts.first_frame_prob > 0 and first_frame_channels(dit, opts.previous_frame) != wanted:
        extra = f" (+ {dit.latent_channels} with t2v.previous_frame)" if opts.previous_frame else ""
        raise ValueError(
            f"t2v.first_frame_prob > 0 needs dit.condition_channels = latent channels + 1 = {wanted}{extra}, "
            f"got {dit.condition_channels}"
        )
    if opts.sample_first_frame_steps > 0 and not opts.first_frame_prob:
        raise ValueError(
            "t2v.sample_first_frame_steps > 0 needs t2v.first_frame_prob > 0: the video is made from "
            "the first frame drawn, which the DiT must have learned to take"
        )


def _check_causal(opts: T2VOptions, dit: DiTConfig) -> None:
    """Raise ValueError naming the first block-causal setting this DiT can't train with."""
    if opts.attention not in ATTENTION_MODES or opts.chunk_frames < 1:
        raise ValueError(
            f"t2v.attention must be one of {ATTENTION_MODES} and t2v.chunk_frames >= 1, "
            f"got {opts.attention!r} and {opts.chunk_frames}"
        )
    if not (0.0 <= opts.context_prob <= 1.0 and 0.0 <= opts.context_sigma_max < 1.0):
        raise ValueError("t2v.context_prob must be in [0, 1] and t2v.context_sigma_max in [0, 1)")
    if not 0.0 <= opts.stream_context_sigma < 1.0:
        raise ValueError(f"t2v.stream_context_sigma must be in [0, 1), got {opts.stream_context_sigma}")
    if opts.attention != "block_causal":
        return
    if dit.patch_size[0] != 1 or opts.noise_correlation or opts.first_frame_prob:
        raise ValueError(
            "t2v.attention=block_causal needs dit.patch_size[0] = 1, noise_correlation 0 and "
            "first_frame_prob 0: a stream draws each chunk's noise on its own and has no first-frame input"
        )
    if opts.context_prob and not opts.frame_sigma_prob:
        raise ValueError("t2v.context_prob needs t2v.frame_sigma_prob > 0 (a noise level per frame)")
