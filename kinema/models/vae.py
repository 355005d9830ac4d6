"""Causal video VAE: pixels (B, 3, T, H, W) in [-1, 1] <-> latents (B, C, T', H', W'), streamable.

Time is causal everywhere: every 3D convolution pads only the past, with the first frame replicated, and
every norm works frame by frame. So latent frame j depends on video frames <= 4j, video frame f depends
on latent frames <= ceil(f / 4) (at 4x time), and a video of T = 1 + 4k frames gives 1 + k latent frames:
the first frame (or a still image, T = 1) is encoded alone.

Chunked (streaming) encoding and decoding carry, for each causal convolution, the last (kernel_t - 1)
time-steps of its input in a `CausalState` (the "feature cache" of Wan's VAE), so decoding one latent
frame at a time costs one latent frame of work and gives the same frames as decoding all at once.

Latent scale: `measure_latent_stats` stores the per-channel mean and std of the posterior means of some
data in the buffers `latent_mean` / `latent_std`, which travel in model.safetensors; `normalize(z)` maps
latents to ~zero mean, unit std for the denoiser and `denormalize` undoes it.

`WanVAE` puts diffusers' `AutoencoderKLWan` behind the same interface, and `load_vae` picks either one
by reading a folder's config.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.checkpoint import checkpoint

from kinema.io.atomic import atomic_path, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WAN_CLASS_NAME = "AutoencoderKLWan"
LOGVAR_RANGE = (-30.0, 20.0)


class DiagonalGaussian:
    """The encoder's posterior: an independent Gaussian per latent element."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean
        self.logvar = logvar.clamp(*LOGVAR_RANGE)

    @classmethod
    def from_moments(cls, moments: torch.Tensor) -> DiagonalGaussian:
        """Split (B, 2C, ...) encoder output into mean and log-variance along channels."""
        mean, logvar = moments.chunk(2, dim=1)
        return cls(mean, logvar)

    @property
    def std(self) -> torch.Tensor:
        """Standard deviation, exp(logvar / 2)."""
        return torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        """The deterministic encoding: the mean."""
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised sample, mean + std * noise (differentiable in mean and logvar)."""
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL divergence to N(0, I), summed over every latent element of a sample: shape (B,)."""
        mean, logvar = self.mean.float(), self.logvar.float()
        per_element = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
        return per_element.flatten(1).sum(dim=1)


@dataclass
class CausalState:
    """What a stream carries between chunks: each causal layer's last inputs, and the steps seen so far."""

    tails: dict[int, torch.Tensor] = field(default_factory=dict)
    position: int = 0  # input time-steps (frames or latent frames) consumed before the current chunk


class CausalConv3d(nn.Conv3d):
    """3D convolution that sees only the current and past time-steps; before the start is the first frame.

    `time_kernel` (default `kernel`) sets how many time-steps it sees; 1 makes it a per-frame 2D convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: tuple[int, ...] = (1, 1, 1),
        time_kernel: int | None = None,
    ):
        time_kernel = kernel if time_kernel is None else time_kernel
        super().__init__(
            in_channels,
            out_channels,
            (time_kernel, kernel, kernel),
            stride=stride,
            padding=(0, kernel // 2, kernel // 2),
        )
        self.time_pad = time_kernel - 1

    def forward(self, x: torch.Tensor, state: CausalState | None = None) -> torch.Tensor:
        """Convolve (B, C, T, H, W); with a state, continue the sequence that earlier chunks started."""
        key = id(self)
        if state is not None and key in state.tails:
            x = torch.cat([state.tails[key], x], dim=2)
        elif self.time_pad:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1), x], dim=2)
        if state is not None:
            stride = self.stride[0]
            outputs = (x.shape[2] - self.kernel_size[0]) // stride + 1
            # Keep every input step that a later output's window still needs.
            state.tails[key] = x[:, :, outputs * stride :].clone()
        return super().forward(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own (so it stays causal), computed in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise (B, C, T, H, W) per sample, group and frame."""
        b, c, t, h, w = x.shape
        grouped = x.float().reshape(b, self.num_groups, c // self.num_groups, t, h, w)
        var, mean = torch.var_mean(grouped, dim=(2, 4, 5), keepdim=True, correction=0)
        normed = ((grouped - mean) * torch.rsqrt(var + self.eps)).view(b, c, t, h, w)
        shape = (1, c, 1, 1, 1)
        return (normed * self.weight.float().view(shape) + self.bias.float().view(shape)).to(x.dtype)


class ResBlock(nn.Module):
    """Two causal (time_kernel)x3x3 convolutions with per-frame GroupNorm and SiLU, plus a skip connection."""

    def __init__(self, in_channels: int, out_channels: int, norm_groups: int, time_kernel: int = 3):
        super().__init__()
        self.norm1 = FrameGroupNorm(math.gcd(in_channels, norm_groups), in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels, time_kernel=time_kernel)
        self.norm2 = FrameGroupNorm(math.gcd(out_channels, norm_groups), out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels, time_kernel=time_kernel)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, state: CausalState | None = None) -> torch.Tensor:
        """Residual update of x."""
        h = self.conv1(F.silu(self.norm1(x)), state)
        h = self.conv2(F.silu(self.norm2(h)), state)
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H and W (if `space`) and T (if `time`) with a strided causal convolution."""

    def __init__(self, channels: int, space: bool, time: bool, time_kernel: int = 3):
        super().__init__()
        s = 2 if space else 1
        stride = (2 if time else 1, s, s)
        self.conv = CausalConv3d(channels, channels, stride=stride, time_kernel=3 if time else time_kernel)

    def forward(self, x: torch.Tensor, state: CausalState | None = None) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T', H', W'), T' = 1 + (T - 1) / 2 when halving time."""
        return self.conv(x, state)


class Upsample(nn.Module):
    """Double H and W (if `space`) and T (if `time`) by nearest repetition, then a causal convolution.

    In time every step becomes two, except the stream's very first, which stays one: 1 + k -> 1 + 2k.
    """

    def __init__(self, channels: int, space: bool, time: bool, time_kernel: int = 3):
        super().__init__()
        self.space, self.time = space, time
        self.conv = CausalConv3d(channels, channels, time_kernel=3 if time else time_kernel)

    def forward(self, x: torch.Tensor, state: CausalState | None = None) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T', H', W')."""
        s = 2 if self.space else 1
        x = F.interpolate(x, scale_factor=(2 if self.time else 1, s, s), mode="nearest")
        if self.time and (state is None or state.position == 0):
            x = x[:, :, 1:]
        return self.conv(x, state)


@dataclass
class VAEConfig:
    """Shape of a CausalVAE. The defaults (8x space, 4x time) turn 64x64x17 clips into 16 x 5 x 8 x 8 latents."""

    in_channels: int = 3
    latent_channels: int = 16
    base_channels: int = 32
    # One entry per resolution level: 1 + max(log2(spatial_downsample / patch_size),
    # log2(temporal_downsample / time_patch)).
    channel_multipliers: tuple[int, ...] = (1, 1, 2, 2)
    num_res_blocks: int = 1  # per encoder level; the decoder has one more, as in most VAEs
    spatial_downsample: int = 8  # in all, patch_size included
    temporal_downsample: int = 4
    # Pixels per side folded into channels before the first convolution (as LTX-Video's and Wan 2.2's
    # VAEs do): no convolution then runs at full resolution, which is most of a small VAE's cost.
    patch_size: int = 1
    # Frames folded into channels the same way, part of temporal_downsample. To stay causal the first
    # frame is repeated to fill a group of its own, so 1 + k*time_patch frames give 1 + k groups.
    time_patch: int = 1
    # Time-steps each convolution sees, except those that halve or double time. 1 with
    # temporal_downsample 1 makes a per-frame image autoencoder, which trains several times faster.
    time_kernel: int = 3
    norm_groups: int = 8  # groups per GroupNorm, reduced to gcd(channels, norm_groups)

    def __post_init__(self) -> None:
        self.channel_multipliers = tuple(self.channel_multipliers)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        names = (
            "in_channels",
            "latent_channels",
            "base_channels",
            "num_res_blocks",
            "norm_groups",
            "time_kernel",
            "time_patch",
        )
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not _is_power_of_two(self.spatial_downsample):
            raise ValueError(
                f"spatial_downsample must be a power of two (4, 8, ...), got {self.spatial_downsample}"
            )
        if not _is_power_of_two(self.temporal_downsample):
            raise ValueError(
                f"temporal_downsample must be a power of two, e.g. 1 or 4; got {self.temporal_downsample}"
            )
        if not _is_power_of_two(self.patch_size) or self.patch_size > self.spatial_downsample:
            raise ValueError(
                f"patch_size must be a power of two no larger than spatial_downsample "
                f"({self.spatial_downsample}), got {self.patch_size}"
            )
        if not _is_power_of_two(self.time_patch) or self.time_patch > self.temporal_downsample:
            raise ValueError(
                f"time_patch must be a power of two no larger than temporal_downsample "
                f"({self.temporal_downsample}), got {self.time_patch}"
            )
        levels = _num_stages(self) + 1
        if len(self.channel_multipliers) != levels or min(self.channel_multipliers) < 1:
            raise ValueError(
                f"channel_multipliers must be {levels} positive numbers for spatial_downsample "
                f"{self.spatial_downsample}, patch_size {self.patch_size} and temporal_downsample "
                f"{self.temporal_downsample}, got {list(self.channel_multipliers)}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VAEConfig:
        """Build from a config.json dict; keys starting with '_' are metadata and skipped."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if not k.startswith("_")}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"unknown VAE config keys {unknown}; valid: {sorted(fields)}")
        return cls(**values)


def _is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return isinstance(n, int) and n >= 1 and n & (n - 1) == 0


def _level_channels(config: VAEConfig) -> list[int]:
    """Channels of each resolution level, finest first."""
    return [config.base_channels * m for m in config.channel_multipliers]


def _space_stages(config: VAEConfig) -> int:
    """How many resampling stages halve H and W: the convolutions' share of spatial_downsample."""
    return int(math.log2(config.spatial_downsample // config.patch_size))


def _folded_channels(config: VAEConfig) -> int:
    """Channels of a video once its pixel and frame patches are folded in: the encoder's input."""
    return config.in_channels * config.time_patch * config.patch_size**2


def _time_stages(config: VAEConfig) -> int:
    """How many resampling stages halve time: the convolutions' share of temporal_downsample."""
    return int(math.log2(config.temporal_downsample // config.time_patch))


def _num_stages(config: VAEConfig) -> int:
    """Resampling stages between resolution levels: enough to halve space and time as often as asked."""
    return max(_space_stages(config), _time_stages(config))


def _halves_space(config: VAEConfig, level: int) -> bool:
    """Whether the resampling between `level` and `level + 1` halves H and W (the finest ones do)."""
    return level < _space_stages(config)


def _halves_time(config: VAEConfig, level: int) -> bool:
    """Whether the resampling between `level` and `level + 1` halves time (the coarsest ones do)."""
    return level >= _num_stages(config) - _time_stages(config)


def _fold(x: torch.Tensor, space: int, time: int, first_chunk: bool) -> torch.Tensor:
    """Pixels (B, C, T, H, W) -> (B, C*time*space², T', H/space, W/space), frame 0 filling a group alone."""
    if first_chunk and time > 1:
        x = torch.cat([x[:, :, :1].expand(-1, -1, time - 1, -1, -1), x], dim=2)
    return rearrange(x, "b c (t r) (h p) (w q) -> b (c r p q) t h w", r=time, p=space, q=space)


def _unfold(x: torch.Tensor, space: int, time: int, first_chunk: bool) -> torch.Tensor:
    """The inverse of `_fold`: the copies of frame 0 that filled its group are dropped."""
    x = rearrange(x, "b (c r p q) t h w -> b c (t r) (h p) (w q)", r=time, p=space, q=space)
    return x[:, :, time - 1 :] if first_chunk else x


def _run_blocks(
    blocks: nn.ModuleList, x: torch.Tensor, state: CausalState | None, use_checkpoint: bool
) -> torch.Tensor:
    """Apply blocks in order, recomputing activations in backward when checkpointing a training pass."""
    for block in blocks:
        if use_checkpoint and state is None and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x, state)
    return x


class Encoder(nn.Module):
    """Video -> posterior moments (B, 2 * latent_channels, T', H', W')."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = _level_channels(config)
        self.patch_size, self.time_patch = config.patch_size, config.time_patch
        tk = config.time_kernel
        self.conv_in = CausalConv3d(_folded_channels(config), channels[0], time_kernel=tk)
        blocks: list[nn.Module] = []
        width = channels[0]
        for level, out in enumerate(channels):
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(width, out, config.norm_groups, tk))
                width = out
            if level < len(channels) - 1:
                space, time = _halves_space(config, level), _halves_time(config, level)
                blocks.append(Downsample(width, space, time, tk))
        blocks.append(ResBlock(width, width, config.norm_groups, tk))
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = FrameGroupNorm(math.gcd(width, config.norm_groups), width)
        self.conv_out = CausalConv3d(width, 2 * config.latent_channels, time_kernel=tk)

    def forward(
        self, x: torch.Tensor, state: CausalState | None = None, use_checkpoint: bool = False
    ) -> torch.Tensor:
        """Encode a video, or the next chunk of a stream when given its state."""
        first_chunk = state is None or state.position == 0
        x = _fold(x, self.patch_size, self.time_patch, first_chunk)
        x = _run_blocks(self.blocks, self.conv_in(x, state), state, use_checkpoint)
        return self.conv_out(F.silu(self.norm_out(x)), state)


class Decoder(nn.Module):
    """Latents (B, latent_channels, T', H', W') -> video (B, 3, T, H, W), mirroring the encoder."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = _level_channels(config)
        width = channels[-1]
        tk = config.time_kernel
        self.conv_in = CausalConv3d(config.latent_channels, width, time_kernel=tk)
        blocks: list[nn.Module] = [ResBlock(width, width, config.norm_groups, tk)]
        for level in reversed(range(len(channels))):
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResBlock(width, channels[level], config.norm_groups, tk))
                width = channels[level]
            if level > 0:
                space, time = _halves_space(config, level - 1), _halves_time(config, level - 1)
                blocks.append(Upsample(width, space, time, tk))
        self.blocks = nn.ModuleList(blocks)
        self.norm_out = FrameGroupNorm(math.gcd(width, config.norm_groups), width)
        self.patch_size, self.time_patch = config.patch_size, config.time_patch
        self.conv_out = CausalConv3d(width, _folded_channels(config), time_kernel=tk)

    def forward(
        self, z: torch.Tensor, state: CausalState | None = None, use_checkpoint: bool = False
    ) -> torch.Tensor:
        """Decode latents, or the next chunk of a stream when given its state."""
        x = _run_blocks(self.blocks, self.conv_in(z, state), state, use_checkpoint)
        x = self.conv_out(F.silu(self.norm_out(x)), state)
        first_chunk = state is None or state.position == 0
        return _unfold(x, self.patch_size, self.time_patch, first_chunk)


class VideoVAE(nn.Module):
    """What every VAE in Kinema offers: shape checks, latent shapes and latent normalisation.

    Subclasses set `spatial_downsample`, `temporal_downsample`, `latent_channels`, `in_channels` and
    register per-channel buffers `latent_mean` and `latent_std`.
    """

    spatial_downsample: int
    temporal_downsample: int
    latent_channels: int
    in_channels: int
    latent_mean: torch.Tensor
    latent_std: torch.Tensor

    def check_video(self, video: torch.Tensor) -> None:
        """Raise ValueError unless video is (B, in_channels, 1 + t*k, H, W) with H, W multiples of s."""
        if video.ndim != 5 or video.shape[1] != self.in_channels:
            raise ValueError(
                f"video must be shaped (B, {self.in_channels}, T, H, W), got {tuple(video.shape)}"
            )
        frames, height, width = video.shape[2:]
        t = self.temporal_downsample
        if (frames - 1) % t:
            examples = ", ".join(str(1 + t * k) for k in range(4))
            raise ValueError(f"frames must be 1 + {t}k ({examples}, ...), got {frames}")
        s = self.spatial_downsample
        if height % s or width % s:
            raise ValueError(f"height and width must be multiples of {s}, got {height}x{width}")

    def check_latents(self, latents: torch.Tensor) -> None:
        """Raise ValueError unless latents are (B, latent_channels, T', H', W')."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels or latents.shape[2] < 1:
            raise ValueError(
                f"latents must be shaped (B, {self.latent_channels}, T', H', W'), got {tuple(latents.shape)}"
            )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latents of a (frames, height, width) video."""
        self.check_video(torch.empty(1, self.in_channels, frames, height, width, device="meta"))
        s = self.spatial_downsample
        return (self.latent_channels, 1 + (frames - 1) // self.temporal_downsample, height // s, width // s)

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw latents -> ~zero mean, unit std per channel (what the denoiser sees)."""
        mean, std = self._stats(latents)
        return (latents - mean) / std

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> raw latents for `decode`."""
        mean, std = self._stats(latents)
        return latents * std + mean

    def _stats(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent_mean and latent_std shaped to broadcast over (B, C, T, H, W) latents."""
        shape = (1, -1, 1, 1, 1)
        mean = self.latent_mean.to(latents.device, latents.dtype).view(shape)
        return mean, self.latent_std.to(latents.device, latents.dtype).view(shape)

    def _check_chunk(self, frames: int, state: CausalState) -> None:
        """Raise ValueError unless a stream's chunk has 1 + t*k frames (first chunk) or t*k (later ones)."""
        t = self.temporal_downsample
        if state.position == 0 and (frames - 1) % t:
            raise ValueError(f"the first chunk must hold 1 + {t}k frames (1, {1 + t}, ...), got {frames}")
        if state.position > 0 and (frames % t or frames == 0):
            raise ValueError(
                f"chunks after the first must hold {t}k frames ({t}, {2 * t}, ...), got {frames}"
            )


class CausalVAE(VideoVAE):
    """Kinema's own causal, KL-regularised video VAE; see the module docstring for the time layout."""

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config or VAEConfig()
        self.spatial_downsample = self.config.spatial_downsample
        self.temporal_downsample = self.config.temporal_downsample
        self.latent_channels = self.config.latent_channels
        self.in_channels = self.config.in_channels
        self.gradient_checkpointing = False
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.register_buffer("latent_mean", torch.zeros(self.latent_channels))
        self.register_buffer("latent_std", torch.ones(self.latent_channels))

    def encode(self, video: torch.Tensor) -> DiagonalGaussian:
        """Video (B, C, 1 + t*k, H, W) in [-1, 1] -> posterior over (B, latent_channels, 1 + k, H/s, W/s)."""
        self.check_video(video)
        return DiagonalGaussian.from_moments(self.encoder(video, use_checkpoint=self.gradient_checkpointing))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw (not normalised) latents -> video, unclamped (clamp to [-1, 1] at the output edge)."""
        self.check_latents(latents)
        return self.decoder(latents, use_checkpoint=self.gradient_checkpointing)

    def forward(
        self, video: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        """Training pass: (reconstruction, posterior), decoding a posterior sample (or the mean)."""
        posterior = self.encode(video)
        latents = posterior.sample(generator) if sample else posterior.mean
        return self.decode(latents), posterior

    def start_encode(self) -> CausalState:
        """A fresh stream for `encode_chunk`."""
        return CausalState()

    def encode_chunk(self, frames: torch.Tensor, state: CausalState) -> DiagonalGaussian:
        """Encode the next chunk of a stream: first 1 + t*k frames, then t*k at a time; same as one-shot."""
        self.check_video(frames[:, :, :1])
        self._check_chunk(frames.shape[2], state)
        posterior = DiagonalGaussian.from_moments(self.encoder(frames, state))
        state.position += frames.shape[2]
        return posterior

    def start_decode(self) -> CausalState:
        """A fresh stream for `decode_chunk`."""
        return CausalState()

    def decode_chunk(self, latents: torch.Tensor, state: CausalState) -> torch.Tensor:
        """Decode the next latent frames of a stream; the first latent frame gives 1 frame, later ones t each."""
        self.check_latents(latents)
        video = self.decoder(latents, state)
        state.position += latents.shape[2]
        return video

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute block activations in backward to save memory in training passes."""
        self.gradient_checkpointing = enabled

    @torch.no_grad()
    def measure_latent_stats(
        self, batches: Iterable[torch.Tensor | dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Set latent_mean / latent_std to the per-channel stats of the posterior means of `batches`.

        Each batch is a video tensor or a dict holding one under "video" (what the datasets yield).
        """
        param = next(self.parameters())
        total = torch.zeros(self.latent_channels, dtype=torch.float64, device=param.device)
        squares, count = total.clone(), 0
        for batch in batches:
            video = batch["video"] if isinstance(batch, dict) else batch
            z = self.encode(video.to(param.device, param.dtype)).mean.double().transpose(0, 1).flatten(1)
            total += z.sum(dim=1)
            squares += z.square().sum(dim=1)
            count += z.shape[1]
        if count == 0:
            raise ValueError("measure_latent_stats needs at least one batch")
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-6)
        self.latent_mean.copy_(mean)
        self.latent_std.copy_(std)
        return self.latent_mean.clone(), self.latent_std.clone()

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
        """Write config.json and model.safetensors atomically; `dtype` (e.g. float16) casts the weights only."""
        folder = Path(folder)
        tensors = {}
        for name, tensor in self.state_dict().items():
            keep = dtype is None or name in ("latent_mean", "latent_std")
            tensors[name] = (tensor if keep else tensor.to(dtype)).detach().cpu().contiguous()
        with atomic_path(folder / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp))
        config = {"_class_name": type(self).__name__, **dataclasses.asdict(self.config)}
        atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> CausalVAE:
        """Load a folder written by `save_pretrained`, in eval mode."""
        folder = Path(folder)
        values = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        name = values.get("_class_name", cls.__name__)
        if name != cls.__name__:
            raise ValueError(f"{folder} holds a {name}, not a {cls.__name__}; use load_vae(folder)")
        model = cls(VAEConfig.from_dict(values))
        model.load_state_dict(load_file(str(folder / WEIGHTS_NAME)))
        return model.to(device).eval()


@dataclass
class WanStreamState:
    """A stream through diffusers' Wan VAE: its own per-convolution feature cache."""

    feat_cache: list[Any]
    position: int = 0


class WanVAE(VideoVAE):
    """diffusers' AutoencoderKLWan behind Kinema's VAE interface (normalisation from its config).

    Streaming uses diffusers' internal feature cache (its encoder and decoder `feat_cache` arguments),
    exactly as its own `encode` / `decode` do, so chunked output equals one-shot output.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        config = model.config
        patch = config.get("patch_size") or 1
        self.spatial_downsample = 2 ** (len(config.dim_mult) - 1) * patch
        # diffusers feeds the encoder 1 frame, then 4 at a time, whatever the temporal factor.
        self.temporal_downsample = 2 ** sum(bool(d) for d in config.temperal_downsample)
        self.latent_channels = config.z_dim
        self.in_channels = config.in_channels
        if (
            len(config.latents_mean) != self.latent_channels
            or len(config.latents_std) != self.latent_channels
        ):
            raise ValueError(
                f"latents_mean and latents_std need {self.latent_channels} entries (z_dim), "
                f"got {len(config.latents_mean)} and {len(config.latents_std)}"
            )
        self.register_buffer("latent_mean", torch.tensor(config.latents_mean), persistent=False)
        self.register_buffer("latent_std", torch.tensor(config.latents_std), persistent=False)

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> WanVAE:
        """Load a diffusers AutoencoderKLWan folder (needs the `wan` extra: pip install 'kinema[wan]')."""
        try:
            from diffusers import AutoencoderKLWan
        except ImportError as e:
            raise ImportError("the Wan VAE needs diffusers: pip install 'kinema[wan]'") from e
        model = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype)
        return cls(model).to(device).eval()

    def encode(self, video: torch.Tensor) -> DiagonalGaussian:
        """Video (B, 3, 1 + 4k, H, W) in [-1, 1] -> posterior over (B, z_dim, 1 + k, H/8, W/8)."""
        self.check_video(video)
        posterior = self.model.encode(video).latent_dist
        return DiagonalGaussian(posterior.mean, posterior.logvar)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw latents -> video, clamped to [-1, 1] by diffusers."""
        self.check_latents(latents)
        return self.model.decode(latents).sample

    def start_encode(self) -> WanStreamState:
        """A fresh stream for `encode_chunk`."""
        return WanStreamState([None] * self._count_convs(self.model.encoder))

    def encode_chunk(self, frames: torch.Tensor, state: WanStreamState) -> DiagonalGaussian:
        """Encode the next chunk: first 1 + 4k frames, then 4k at a time; same as one-shot."""
        self.check_video(frames[:, :, :1])
        self._check_chunk(frames.shape[2], state)
        patch = self.model.config.get("patch_size")
        x = self._patchify(frames, patch) if patch else frames
        # The pieces diffusers' own encode feeds its encoder: the first frame alone, then 4 at a time.
        head, rest = (x[:, :, :1], x[:, :, 1:]) if state.position == 0 else (x[:, :, :0], x)
        pieces = [p for p in (head, *rest.split(4, dim=2)) if p.shape[2]]
        outs = [self.model.encoder(p, feat_cache=state.feat_cache, feat_idx=[0]) for p in pieces]
        state.position += frames.shape[2]
        return DiagonalGaussian.from_moments(self.model.quant_conv(torch.cat(outs, dim=2)))

    def start_decode(self) -> WanStreamState:
        """A fresh stream for `decode_chunk`."""
        return WanStreamState([None] * self._count_convs(self.model.decoder))

    def decode_chunk(self, latents: torch.Tensor, state: WanStreamState) -> torch.Tensor:
        """Decode the next latent frames of a stream, one at a time as diffusers does; clamped to [-1, 1]."""
        self.check_latents(latents)
        x = self.model.post_quant_conv(latents)
        outs = []
        for i in range(x.shape[2]):
            outs.append(
                self.model.decoder(
                    x[:, :, i : i + 1],
                    feat_cache=state.feat_cache,
                    feat_idx=[0],
                    first_chunk=state.position == 0,
                )
            )
            state.position += 1
        video = torch.cat(outs, dim=2)
        patch = self.model.config.get("patch_size")
        if patch:
            video = self._unpatchify(video, patch)
        return video.clamp(-1.0, 1.0)

    @staticmethod
    def _count_convs(module: nn.Module) -> int:
        """How many cache slots diffusers' Wan encoder or decoder uses: one per causal convolution."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        return sum(isinstance(m, WanCausalConv3d) for m in module.modules())

    @staticmethod
    def _patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
        """diffusers' Wan 2.2 pixel patchify."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import patchify

        return patchify(x, patch_size=patch)

    @staticmethod
    def _unpatchify(x: torch.Tensor, patch: int) -> torch.Tensor:
        """diffusers' Wan 2.2 pixel unpatchify."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        return unpatchify(x, patch_size=patch)


def load_vae(folder: str | os.PathLike, device: str | torch.device = "cpu") -> CausalVAE | WanVAE:
    """Load any saved VAE folder: diffusers' AutoencoderKLWan goes through WanVAE, anything else is ours."""
    config_path = Path(folder) / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; a saved VAE is a folder with config.json")
    name = json.loads(config_path.read_text(encoding="utf-8")).get("_class_name")
    if name == WAN_CLASS_NAME:
        return WanVAE.from_pretrained(folder, device=device)
    return CausalVAE.from_pretrained(folder, device=device)
