"""Samplers for rectified flow: the noise schedule, Euler and Heun, and classifier-free guidance.

A velocity function maps latents x (B, C, F, H, W) and noise levels σ, shaped (B,) or per frame
(B, F), to the velocity v = noise − x0. Sampling integrates dx/dσ = v from σ = 1 (noise) to σ = 0.
For classifier-free guidance pass a `Guidance` (two velocity functions) or a `ModelGuidance` (a DiT
with both prompts batched into one forward pass) together with `guidance=w`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from kinema.diffusion.flow import (
    SAMPLE_MIN_SIGMA,
    as_velocity,
    broadcast_sigma,
    correlate_frames,
    pad_text,
    shift_sigmas,
)

VelocityFn = Callable[[Tensor, Tensor], Tensor]
METHODS = ("euler", "heun")


@runtime_checkable
class GuidedVelocity(Protocol):
    """A velocity function that can also give the unconditional branch for classifier-free guidance."""

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The conditional velocity alone."""
        ...

    def both(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The conditional and the unconditional velocity."""
        ...


def make_sigmas(steps: int, shift: float = 1.0, num_train_timesteps: int = 1000) -> Tensor:
    """steps + 1 noise levels from 1 down to 0, exactly those of diffusers' FlowMatchEulerDiscreteScheduler."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    # diffusers shifts its training grid once (which sets the smallest sigma) and the inference grid
    # again; its arithmetic (float32 grid, float64 linspace) is mirrored so the values agree bit for bit.
    train_min = torch.tensor(1.0, dtype=torch.float32) / num_train_timesteps
    sigma_min = float(shift_sigmas(train_min, shift))
    grid = np.linspace(num_train_timesteps, sigma_min * num_train_timesteps, steps) / num_train_timesteps
    sigmas = torch.from_numpy(shift_sigmas(grid, shift)).to(torch.float32)
    return torch.cat([sigmas, torch.zeros(1)])


def timesteps(sigma: Tensor) -> Tensor:
    """The model's timestep for a noise level, in Wan's convention t = 1000·σ."""
    return sigma * 1000


def make_noise(
    shape: Sequence[int],
    seed: int | Sequence[int] | torch.Generator,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    frame_correlation: float = 0.0,
) -> Tensor:
    """Gaussian noise from a seed, one seed per sample, or a generator; the same on every device.

    With `frame_correlation` c > 0, latents (B, C, F, H, W) get frames that share a fraction c of
    their variance (see `correlate_frames`); the shared draw comes first in the same seeded stream.
    """
    # Drawn on the CPU so that a seed gives the same video on CPU and GPU. A list of seeds gives each
    # sample its own stream, so a sample does not change with its batch mates.
    shape = tuple(shape)
    draw = shape if frame_correlation == 0.0 else (*shape[:2], shape[2] + 1, *shape[3:])
    if isinstance(seed, torch.Generator):
        noise = torch.randn(draw, generator=seed, device=seed.device)
    elif isinstance(seed, int):
        noise = torch.randn(draw, generator=torch.Generator().manual_seed(seed))
    else:
        if len(seed) != shape[0]:
            raise ValueError(f"{len(seed)} seeds for a batch of {shape[0]}")
        gens = [torch.Generator().manual_seed(int(s)) for s in seed]
        noise = torch.stack([torch.randn(draw[1:], generator=g) for g in gens])
    if frame_correlation != 0.0:
        noise = correlate_frames(noise[:, :, 1:], noise[:, :, :1], frame_correlation)
    return noise.to(device=device, dtype=dtype)


@dataclass
class Guidance:
    """Classifier-free guidance from two velocity functions: prompted and unprompted (or negative)."""

    cond: VelocityFn
    uncond: VelocityFn

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The conditional velocity alone."""
        return self.cond(x, sigma)

    def both(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The conditional and the unconditional velocity, one call each."""
        return self.cond(x, sigma), self.uncond(x, sigma)


@dataclass
class ModelVelocity:
    """A DiT as a velocity function: model(x, 1000·σ, text_states, text_mask=..., **kwargs).

    `prediction` says what the model outputs: the velocity, or the clean sample (see flow.py).
    """

    model: Callable[..., Tensor]
    text_states: Tensor
    text_mask: Tensor | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    prediction: str = "velocity"

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The model's velocity at x and σ for this prompt."""
        out = self.model(x, timesteps(sigma), self.text_states, text_mask=self.text_mask, **self.kwargs)
        return as_velocity(out, x, sigma, self.prediction, SAMPLE_MIN_SIGMA)


@dataclass
class ModelGuidance:
    """Classifier-free guidance over a DiT, both prompts in one forward pass of batch 2B.

    `uncond_states` is the empty prompt or a negative prompt, (B, L', D) or (1, L', D); the shorter text
    is padded with masked tokens. Tensor kwargs whose first dimension is B are repeated for the 2B pass.
    """

    model: Callable[..., Tensor]
    text_states: Tensor
    text_mask: Tensor
    uncond_states: Tensor
    uncond_mask: Tensor
    kwargs: dict[str, Any] = field(default_factory=dict)
    prediction: str = "velocity"

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The conditional velocity alone (batch B), for guidance 1."""
        velocity = ModelVelocity(self.model, self.text_states, self.text_mask, self.kwargs, self.prediction)
        return velocity(x, sigma)

    def both(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """The conditional and the unconditional velocity from one forward pass."""
        batch = x.shape[0]
        states, mask = paired_text(
            self.text_states, self.text_mask, self.uncond_states, self.uncond_mask, batch
        )
        kwargs = {k: _repeat_batch(v, batch) for k, v in self.kwargs.items()}
        x2, sigma2 = torch.cat([x, x]), torch.cat([sigma, sigma])
        out = self.model(x2, timesteps(sigma2), states, text_mask=mask, **kwargs)
        v = as_velocity(out, x2, sigma2, self.prediction, SAMPLE_MIN_SIGMA)
        return v[:batch], v[batch:]


def paired_text(
    states: Tensor, mask: Tensor, uncond_states: Tensor, uncond_mask: Tensor, batch: int
) -> tuple[Tensor, Tensor]:
    """Prompt then unconditional text for a guidance pass of batch 2B, padded to one length."""
    length = max(states.shape[1], uncond_states.shape[1])
    cond = pad_text(states, mask.bool(), length)
    uncond = pad_text(uncond_states, uncond_mask.bool(), length)
    uncond = (uncond[0].expand(batch, -1, -1), uncond[1].expand(batch, -1))
    return torch.cat([cond[0], uncond[0].to(cond[0])]), torch.cat([cond[1], uncond[1].to(cond[1].device)])


def _repeat_batch(value: Any, batch: int) -> Any:
    """Repeat a per-sample tensor for the 2B guidance pass; leave anything else alone."""
    if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return torch.cat([value, value])
    return value


def sample(
    velocity_fn: VelocityFn | GuidedVelocity,
    noise: Tensor,
    sigmas: Tensor,
    method: str = "euler",
    guidance: float = 1.0,
    progress: bool = False,
) -> Tensor:
    """Integrate from `noise` along `sigmas`: (N+1,) shared, (N+1, B) per sample or (N+1, B, F) per frame."""
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}', choose one of {', '.join(METHODS)}")
    velocity = _guided(velocity_fn, guidance)
    schedule = _schedule(sigmas, noise)
    # Low-precision latents accumulate error over many steps, so the state is kept in float32 at least.
    x = noise.to(torch.promote_types(noise.dtype, torch.float32))

    def v_at(state: Tensor, sigma: Tensor) -> Tensor:
        return velocity(state.to(noise.dtype), sigma).to(x.dtype)

    for i in tqdm(range(len(schedule) - 1), desc=f"sampling ({method})", disable=not progress):
        x = _step(v_at, x, schedule[i], schedule[i + 1], method)
    return x.to(noise.dtype)


def _guided(velocity_fn: VelocityFn | GuidedVelocity, guidance: float) -> VelocityFn:
    """The velocity to integrate: conditional only at guidance 1, else v_u + w·(v_c − v_u)."""
    if guidance == 1.0:
        return velocity_fn
    if not isinstance(velocity_fn, GuidedVelocity):
        raise TypeError(
            f"guidance {guidance} needs an unconditional branch: pass a Guidance or ModelGuidance"
        )

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        v_cond, v_uncond = velocity_fn.both(x, sigma)
        return v_uncond + guidance * (v_cond - v_uncond)

    return guided


def _schedule(sigmas: Tensor, noise: Tensor) -> Tensor:
    """The schedule as (N+1, B) or (N+1, B, F) on the noise's device, float32 at least."""
    sigmas = torch.as_tensor(sigmas).to(noise.device, torch.promote_types(noise.dtype, torch.float32))
    if sigmas.ndim == 1:
        sigmas = sigmas[:, None].expand(-1, noise.shape[0])
    if sigmas.ndim not in (2, 3) or sigmas.shape[0] < 2 or sigmas.shape[1] != noise.shape[0]:
        raise ValueError(
            f"sigmas shaped {tuple(sigmas.shape)} do not fit noise {tuple(noise.shape)}: "
            "want (N+1,), (N+1, B) or (N+1, B, F)"
        )
    return sigmas


def _step(v_at: VelocityFn, x: Tensor, sigma: Tensor, sigma_next: Tensor, method: str) -> Tensor:
    """One Euler step, or Heun's trapezoid where the next level is above 0 (Euler where it is 0)."""
    dt = broadcast_sigma(sigma_next - sigma, x)
    v = v_at(x, sigma)
    x_euler = x + dt * v
    if method == "euler" or not bool((sigma_next > 0).any()):
        return x_euler
    v_next = v_at(x_euler, sigma_next)
    # Per-frame schedules can land some frames on 0 while others go on; those take the Euler step.
    final = broadcast_sigma(sigma_next == 0, x)
    return x + dt * torch.where(final, v, (v + v_next) / 2)
