"""Rectified flow for training: noise levels, their shift, noising, the velocity target and the loss.

Conventions (Wan's): x_σ = (1 − σ)·x0 + σ·noise for σ in [0, 1], the model predicts the velocity
v = noise − x0, and its timestep is t = 1000·σ. A noise level is one per sample, shaped (B,), or
one per frame, shaped (B, F), for Diffusion Forcing; it broadcasts over latents (B, C, F, H, W).
A model may instead predict the clean sample x0 (prediction "sample"); its output is turned into
the velocity v = (x_σ − x̂0) / σ before any loss or sampler sees it.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Resolution-aware shift: a line in token count through (256 tokens, shift 1) and Wan2.1 at 480p
# (81 frames, 832×480: 21 latent frames × 1560 tokens = 32760 tokens, shift 3). It reaches 5 at
# 65264 tokens and stays there, which also gives Wan's shift 5 at 720p (75600 tokens).
BASE_TOKENS = 256
BASE_SHIFT = 1.0
MAX_TOKENS = 65264
MAX_SHIFT = 5.0


def shift_sigmas(sigma: Tensor | float, shift: float) -> Tensor | float:
    """Warp noise levels towards 1: σ' = sσ / (1 + (s − 1)σ), as diffusers' flow-matching schedulers."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def resolution_shift(
    num_tokens: int,
    base_tokens: int = BASE_TOKENS,
    base_shift: float = BASE_SHIFT,
    max_tokens: int = MAX_TOKENS,
    max_shift: float = MAX_SHIFT,
) -> float:
    """The shift for a video of `num_tokens` DiT tokens: linear in token count, clamped to the ends."""
    # More tokens carry more redundant signal, so the same σ leaves more of the picture legible and
    # needs to be pushed up. SD3/Flux interpolate in token count; we clamp so that neither tiny 64×64
    # clips (shift 1) nor long videos beyond the anchors (shift 5) extrapolate off the line.
    if max_tokens <= base_tokens:
        raise ValueError(f"max_tokens ({max_tokens}) must exceed base_tokens ({base_tokens})")
    frac = (num_tokens - base_tokens) / (max_tokens - base_tokens)
    return base_shift + min(max(frac, 0.0), 1.0) * (max_shift - base_shift)


def sample_sigmas(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
) -> Tensor:
    """Logit-normal noise levels of `shape`, (B,) or (B, F) with every frame independent, then shifted."""
    device = generator.device if generator is not None else None
    logits = torch.randn(tuple(shape), generator=generator, device=device) * std + mean
    return shift_sigmas(torch.sigmoid(logits), shift)


def with_clean_past(
    sigma: Tensor, chunk_frames: int, context_prob: float, context_sigma_max: float
) -> tuple[Tensor, Tensor]:
    """Per-frame σ (B, F) where a fraction `context_prob` of rows get a nearly clean past, and the frames to learn.

    Those rows keep their own σ on the last chunk only, and every earlier frame gets U(0,
    `context_sigma_max`): the situation of a block-causal stream making its next chunk, with the
    context noise augmentation of GameNGen and DIAMOND. The other rows stay Diffusion Forcing.
    The second tensor, (B, F) bool, is False on those rows' past: it is given, not predicted, as
    GameNGen and DIAMOND train, and its loss would swamp the rest, since a velocity error at σ
    weighs like a clean-sample error over σ².
    """
    target = torch.ones_like(sigma, dtype=torch.bool)
    if not context_prob:
        return sigma, target
    batch, frames = sigma.shape
    past = frames - chunk_frames
    context = torch.rand(batch, past, device=sigma.device) * context_sigma_max
    playing = torch.cat([context, sigma[:, past:]], dim=1)
    rows = (torch.rand(batch, device=sigma.device) < context_prob)[:, None]
    target[:, :past] = ~rows
    return torch.where(rows, playing, sigma), target


def broadcast_sigma(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Reshape σ, a scalar, (B,) or per-frame (B, F), so that it broadcasts over x (B, C, F, ...)."""
    sigma = torch.as_tensor(sigma, device=x.device)
    if sigma.ndim == 0:
        return sigma
    if sigma.ndim == 1 and sigma.shape[0] == x.shape[0]:
        return sigma.view(-1, *[1] * (x.ndim - 1))
    if sigma.ndim == 2 and x.ndim >= 3 and tuple(sigma.shape) == (x.shape[0], x.shape[2]):
        return sigma.view(sigma.shape[0], 1, sigma.shape[1], *[1] * (x.ndim - 3))
    if sigma.shape == x.shape:
        return sigma
    raise ValueError(
        f"noise level shaped {tuple(sigma.shape)} does not fit latents {tuple(x.shape)}: "
        "want (B,), (B, F) or the latents' own shape"
    )


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """The point at noise level σ on the straight path from x0 (σ = 0) to noise (σ = 1)."""
    s = broadcast_sigma(sigma, x0).to(x0.dtype)
    return (1 - s) * x0 + s * noise


PREDICTIONS = ("velocity", "sample")
# x-prediction's velocity divides by σ; training bounds it there as JiT does, so the few nearly clean
# samples do not dominate the loss. Sampling never evaluates below the schedule's last σ (0.001 × shift).
TRAIN_MIN_SIGMA = 0.05
SAMPLE_MIN_SIGMA = 1e-4


def as_velocity(
    output: Tensor, x: Tensor, sigma: Tensor | float, prediction: str, min_sigma: float
) -> Tensor:
    """A model's output at x_σ as a velocity: as is, or from a predicted clean sample (σ ≥ min_sigma)."""
    if prediction == "velocity":
        return output
    if prediction != "sample":
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    s = broadcast_sigma(sigma, x).clamp_min(min_sigma)
    return ((x.float() - output.float()) / s).to(output.dtype)


def noise_settings_problem(prediction: str, noise_correlation: float) -> str | None:
    """What is wrong with a model's prediction type or frame noise correlation, or None."""
    if prediction not in PREDICTIONS:
        return f"prediction must be one of {PREDICTIONS}, got {prediction!r}"
    if not 0.0 <= noise_correlation < 1.0:
        return f"noise_correlation must be in [0, 1), got {noise_correlation}"
    return None


def correlate_frames(noise: Tensor, shared: Tensor, correlation: float) -> Tensor:
    """Noise whose frames share a fraction `correlation` of their variance: √c·shared + √(1 − c)·noise.

    noise is (B, C, F, H, W) and independent; shared is (B, C, 1, H, W), one draw for every frame.
    Each element stays N(0, 1); two frames correlate by c. With independent noise, frames break ties
    (where does the object go?) each their own way, and objects jump; shared noise makes them agree
    (as PYoCo's mixed noise does), so the model must learn to move things against it.
    """
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"frame noise correlation must be in [0, 1), got {correlation}")
    if correlation == 0.0:
        return noise
    return correlation**0.5 * shared.to(noise) + (1.0 - correlation) ** 0.5 * noise


def previous_frames(latents: Tensor, before: Tensor | None = None) -> Tensor:
    """Frame stacking's condition (B, C, F, h, w): each frame's previous frame, `before` (or zeros) for the first."""
    # As noisy as the window holds it, which is how the stream holds its past.
    first = torch.zeros_like(latents[:, :, :1]) if before is None else before
    return torch.cat([first, latents[:, :, :-1]], dim=2)


def motion_weight(
    x0: Tensor, strength: float, before: Tensor | None = None, has_before: Tensor | None = None
) -> Tensor:
    """Per-element loss weight, 1 + `strength` x how much each latent pixel changed since its previous frame.

    The change is the channel mean of |difference|, capped at 1. The first frame is compared with
    `before` (B, C, 1, h, w) where `has_before` (B,) says it is known, and otherwise counts as still.
    """
    first = x0[:, :, :1] if before is None else before.to(x0)
    change = (x0 - previous_frames(x0, first)).abs().mean(1, keepdim=True).clamp(max=1.0)
    if has_before is not None:
        change[:, :, :1] *= has_before.to(x0).view(-1, 1, 1, 1, 1)
    return (1 + strength * change).expand_as(x0)


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """The velocity the model learns: d x_σ / dσ = noise − x0."""
    return noise - x0


def flow_loss(
    prediction: Tensor,
    x0: Tensor,
    noise: Tensor,
    weight: Tensor | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Mean squared velocity error, optionally weighted and masked per sample (B,) or per frame (B, F)."""
    err = (prediction.float() - velocity_target(x0, noise).float()).square()
    if weight is not None:
        err = err * broadcast_sigma(weight, err).float()
    if mask is None:
        return err.mean()
    keep = broadcast_sigma(mask, err).float().expand_as(err)
    # Frames left out (clean context in Diffusion Forcing or image-to-video) count for nothing, so
    # the mean is over kept elements only; an all-masked batch gives 0, still attached to the graph.
    return (err * keep).sum() / keep.sum().clamp_min(1.0)


def pad_text(states: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """Pad text states (B, L, D) and mask (B, L) with zeros/False to `length` tokens (never truncates)."""
    extra = length - states.shape[1]
    if extra < 0:
        raise ValueError(f"text of {states.shape[1]} tokens cannot be padded to {length}")
    if extra == 0:
        return states, mask
    states = torch.nn.functional.pad(states, (0, 0, 0, extra))
    return states, torch.nn.functional.pad(mask, (0, extra), value=False)


def drop_prompts(
    text_states: Tensor,
    text_mask: Tensor,
    null_states: Tensor,
    null_mask: Tensor,
    p: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Replace about a fraction p of the batch's prompts with the empty prompt, for CFG training."""
    batch = text_states.shape[0]
    null_states = null_states.reshape(-1, *null_states.shape[-2:])
    null_mask = null_mask.reshape(-1, null_mask.shape[-1]).bool()
    length = max(text_states.shape[1], null_states.shape[1])
    text_states, text_mask = pad_text(text_states, text_mask.bool(), length)
    null_states, null_mask = pad_text(null_states.to(text_states), null_mask.to(text_mask.device), length)
    device = generator.device if generator is not None else None
    drop = (torch.rand(batch, generator=generator, device=device) < p).to(text_states.device)
    states = torch.where(drop[:, None, None], null_states.expand(batch, -1, -1), text_states)
    return states, torch.where(drop[:, None], null_mask.expand(batch, -1), text_mask)
