"""Streaming: a block-causal DiT makes latent chunks one after another, each from a few denoising steps.

Each chunk is denoised against a KV cache of the chunks before it (CausVid, Self-Forcing), then
written into the cache once, clean or lightly re-noised (`context_sigma`, as GameNGen and DIAMOND
noise their context). A rolling window keeps the first `sink_frames` frames (attention sinks) and
the last `window_frames`, so a rollout of any length runs in constant memory. Cached keys carry RoPE
at their absolute frame positions and RoPE is relative, so frames far past the training length
only ever see distances the model knows from its window. A sink's distance to the newest frame
does grow without bound, so a model not trained with distant sinks should run without them
(the world models do: `sink_frames: 0`).

`recompute=True` is the baseline without a cache (Oasis-style): every denoising step runs the DiT
over the whole context again. Without a window both modes compute the same function, which the
tests hold to 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from kinema.diffusion.flow import add_noise, previous_frames
from kinema.diffusion.sampling import (
    METHODS,
    ModelGuidance,
    ModelVelocity,
    make_sigmas,
    paired_text,
    sample,
)
from kinema.models.dit import DiTConfig, VideoDiT


def first_frame_channels(config: DiTConfig, previous_frame: bool) -> int:
    """How many of a DiT's condition channels carry a first frame: 0, or a mask plus its latent."""
    return config.condition_channels - (config.latent_channels if previous_frame else 0)


@dataclass
class StreamSettings:
    """How a stream samples each chunk and how much of the past it keeps."""

    chunk_frames: int = 1  # latent frames a chunk: the unit of block-causal attention
    steps: int = 4  # denoising steps a chunk
    shift: float = 1.0
    sampler: str = "euler"
    context_sigma: float = 0.0  # noise level of a finished chunk as the cache sees it
    sink_frames: int = 1  # first frames kept for good (attention sinks) once the window is full
    window_frames: int | None = None  # the last frames kept besides the sinks; None keeps them all
    # The DiT takes each frame's previous frame, as the cache sees it, in its condition channels
    # (frame stacking, as DIAMOND and GameNGen do), so copying what stays still is a local operation.
    previous_frame: bool = False
    guidance: float = 1.0  # classifier-free guidance scale; above 1 the stream also needs unconditional text

    def __post_init__(self) -> None:
        problem = _settings_problem(self)
        if problem:
            raise ValueError(f"stream settings: {problem}")


def _settings_problem(s: StreamSettings) -> str | None:
    """The first thing wrong with the settings, or None."""
    if s.chunk_frames < 1 or s.steps < 1:
        return f"chunk_frames and steps must be >= 1, got {s.chunk_frames} and {s.steps}"
    if s.sampler not in METHODS:
        return f"sampler must be one of {', '.join(METHODS)}, got {s.sampler!r}"
    if not 0.0 <= s.context_sigma < 1.0:
        return f"context_sigma must be in [0, 1), got {s.context_sigma}"
    if s.sink_frames < 0:
        return f"sink_frames must be >= 0, got {s.sink_frames}"
    if s.guidance < 0:
        return f"guidance must be >= 0, got {s.guidance}"
    if s.window_frames is not None and s.window_frames < s.chunk_frames:
        return f"window_frames ({s.window_frames}) must hold at least one chunk ({s.chunk_frames} frames)"
    return None


class LatentStream:
    """Latent chunks one after another from a block-causal DiT, each seeing the stream's past."""

    def __init__(
        self,
        dit: VideoDiT,
        text_states: Tensor,
        text_mask: Tensor | None = None,
        settings: StreamSettings | None = None,
        seed: int = 0,
        recompute: bool = False,
        uncond: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        self.dit, self.settings, self.recompute = dit.eval(), settings or StreamSettings(), recompute
        if recompute and self.settings.window_frames is not None and self.settings.sink_frames:
            raise ValueError("stream settings: recompute keeps a plain window; set sink_frames=0")
        self.text_states, self.text_mask = text_states, text_mask
        # With guidance the past holds both branches, prompted then unconditional: batch 2B throughout.
        self.guided = self.settings.guidance != 1.0
        self.uncond = uncond
        if self.guided:
            if uncond is None or text_mask is None:
                raise ValueError("a guided stream needs the unconditional text and both text masks")
            self.past_text = paired_text(text_states, text_mask, *uncond, batch=len(text_states))
        else:
            self.past_text = (text_states, text_mask)
        self.cache = dit.new_cache()
        self.context: list[Tensor] = []  # recompute: the past chunks as the cache would hold them
        self.context_actions: list[Tensor] = []
        self.last_seen: Tensor | None = None  # the newest frame as the cache holds it
        self.before_context: Tensor | None = None  # recompute: the frame before the oldest kept one
        self.frames_made = 0
        device = next(dit.parameters()).device
        self.generator = torch.Generator(device).manual_seed(seed)  # the context re-noising

    @torch.no_grad()
    def next_chunk(self, noise: Tensor, actions: Tensor | None = None, remember: bool = True) -> Tensor:
        """Denoise `noise` (B, C, chunk_frames, H, W) into the next chunk's latents; `actions` (B, chunk_frames).

        `remember=False` leaves the chunk out of the stream's past, for the caller to `push` another
        in its place (teacher forcing: the true frame instead of the made one).
        """
        s = self.settings
        if noise.ndim != 5 or noise.shape[2] != s.chunk_frames:
            raise ValueError(
                f"noise must be (B, C, {s.chunk_frames}, H, W) for chunks of {s.chunk_frames} frames, "
                f"got {tuple(noise.shape)}"
            )
        denoiser = self._denoiser(actions)
        if self.guided:
            velocity = ModelGuidance(denoiser, self.text_states, self.text_mask, *self.uncond)
        else:
            velocity = ModelVelocity(denoiser, self.text_states, self.text_mask)
        sigmas = make_sigmas(s.steps, shift=s.shift).to(noise.device)
        clean = sample(velocity, noise, sigmas, method=s.sampler, guidance=s.guidance)
        if remember:
            self._remember(clean, actions)
            self.frames_made += s.chunk_frames
        return clean

    @torch.no_grad()
    def push(self, clean: Tensor, actions: Tensor | None = None) -> None:
        """Add known clean latents (B, C, chunk_frames, H, W), e.g. a real first frame, to the stream's past."""
        if clean.ndim != 5 or clean.shape[2] != self.settings.chunk_frames:
            raise ValueError(
                f"latents must be (B, C, {self.settings.chunk_frames}, H, W), got {tuple(clean.shape)}"
            )
        self._remember(clean, actions)
        self.frames_made += self.settings.chunk_frames

    def _denoiser(self, actions: Tensor | None) -> Callable[..., Tensor]:
        """model(x, t, text, text_mask=...) for the chunk being made, over the cache or the context."""
        c = self.settings.chunk_frames
        causal = {"attention": "block_causal", "chunk_frames": c}
        if self.guided and actions is not None:
            actions = torch.cat([actions, actions])
        if not self.recompute:

            def cached(x: Tensor, t: Tensor, text: Tensor, text_mask: Tensor | None = None) -> Tensor:
                extra = self._extra_inputs(x, actions, self.last_seen)
                return self.dit(x, t, text, text_mask=text_mask, cache=self.cache, **causal, **extra)

            return cached

        def recomputed(x: Tensor, t: Tensor, text: Tensor, text_mask: Tensor | None = None) -> Tensor:
            frames = torch.cat([*self.context, x], dim=2)
            context_t = torch.full((x.shape[0], frames.shape[2] - c), 1000.0 * self.settings.context_sigma)
            per_frame = torch.cat([context_t.to(t), t[:, None].expand(-1, c)], dim=1)
            past_actions = None if actions is None else torch.cat([*self.context_actions, actions], dim=1)
            extra = self._extra_inputs(frames, past_actions, self.before_context)
            start = self.frames_made - (frames.shape[2] - c)
            out = self.dit(frames, per_frame, text, text_mask=text_mask, start_frame=start, **causal, **extra)
            return out[:, :, -c:]

        return recomputed

    def _extra_inputs(
        self, latents: Tensor, actions: Tensor | None, before: Tensor | None
    ) -> dict[str, Tensor]:
        """Actions when given, and the condition: zeros for a first frame the stream is not given, then
        with frame stacking each frame's previous frame (`before` the first one, zeros at the start)."""
        extra = {} if actions is None else {"actions": actions}
        if not self.dit.config.condition_channels:
            return extra
        stacked = self.settings.previous_frame
        b, _, f, h, w = latents.shape
        condition = latents.new_zeros(b, first_frame_channels(self.dit.config, stacked), f, h, w)
        if stacked:
            condition = torch.cat([condition, previous_frames(latents, before)], dim=1)
        extra["condition"] = condition
        return extra

    def _remember(self, clean: Tensor, actions: Tensor | None) -> None:
        """Put the finished chunk where the next ones see it, then drop what the window no longer holds."""
        s = self.settings
        if self.guided:
            clean, actions = (
                torch.cat([clean, clean]),
                None if actions is None else torch.cat([actions, actions]),
            )
        noise = torch.randn(clean.shape, generator=self.generator, device=clean.device, dtype=clean.dtype)
        seen = add_noise(clean, noise, s.context_sigma) if s.context_sigma else clean
        before, self.last_seen = self.last_seen, seen[:, :, -1:]
        if self.recompute:
            self.context.append(seen)
            if actions is not None:
                self.context_actions.append(actions)
            if s.window_frames is not None:
                self._keep_last_chunks(s.window_frames // s.chunk_frames)
            return
        t = torch.full((clean.shape[0],), 1000.0 * s.context_sigma, device=clean.device)
        extra = self._extra_inputs(seen, actions, before)
        self.dit(
            seen,
            t,
            self.past_text[0],
            text_mask=self.past_text[1],
            cache=self.cache,
            update_cache=True,
            attention="block_causal",
            chunk_frames=s.chunk_frames,
            **extra,
        )
        if s.window_frames is not None:
            self.cache.trim(keep_first=s.sink_frames, keep_last=s.window_frames)

    def _keep_last_chunks(self, chunks: int) -> None:
        """Recompute's window: the last `chunks` chunks of context."""
        if len(self.context) > chunks:
            self.before_context = self.context[-chunks - 1][:, :, -1:]
        self.context = self.context[-chunks:]
        self.context_actions = self.context_actions[-chunks:]
