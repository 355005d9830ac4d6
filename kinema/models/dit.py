"""One video DiT in the Wan2.1 weight layout: per-frame timesteps, block-causal masks and a KV cache.

Parameter names and shapes match diffusers' `WanTransformer3DModel` (T2V), so its checkpoints load
strictly and give the same output. What we add on top:

- timesteps per latent frame (Diffusion Forcing): tokens are modulated by their own frame's time;
- block-causal attention by chunks of frames, and a `KVCache` for streaming one chunk at a time;
- optional per-frame action embeddings, added to the time embedding (a world model's controls);
- optional conditioning channels (first frame, previous frame, mask) concatenated to the latents.

`in_channels` counts every input channel, exactly as in Wan: Wan I2V has in_channels=36 = 16 latents
+ 4 mask + 16 image latents. `condition_channels` says how many of them arrive through `condition`,
so forward takes latents with `in_channels - condition_channels` channels plus the condition.
A time patch pt > 1 groups latent frames pt at a time; when their count is not a multiple of pt,
the first frame is repeated in front until it fills a group of its own (as a causal VAE keeps it
alone), and the repeats are cropped from the output: 1 + 4k latent frames make 1 + k token frames.
Block-causal attention runs one SDPA call per chunk over the keys it may see, instead of a dense
boolean mask: nothing of size tokens² is built, and CUDA keeps its flash/efficient kernels.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from kinema.errors import ConfigError
from kinema.io.atomic import atomic_path, atomic_write_text

ATTENTION_MODES = ("bidirectional", "block_causal")
WEIGHT_FILES = ("model.safetensors", "diffusion_pytorch_model.safetensors")
# diffusers drops this key on load too; old Wan exports carry it without using it.
IGNORED_WEIGHTS = ("norm_added_q",)


@dataclass
class DiTConfig:
    """diffusers' WanTransformer3DModel config keys plus ours; the defaults are Wan2.1-T2V-1.3B."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 12
    attention_head_dim: int = 128
    in_channels: int = 16
    out_channels: int | None = 16
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 8960
    num_layers: int = 30
    cross_attn_norm: bool = True
    qk_norm: str | None = "rms_norm_across_heads"
    eps: float = 1e-6
    # Our RoPE is computed for any position; this is kept for diffusers and as the trained range.
    rope_max_seq_len: int = 1024
    # Wan's CLIP image branch (I2V-14B); accepted as keys so diffusers configs load, but must be null.
    image_dim: int | None = None
    added_kv_proj_dim: int | None = None
    pos_embed_seq_len: int | None = None
    # Ours: 0 means no action embedding; condition channels are part of in_channels (see module doc).
    num_actions: int = 0
    condition_channels: int = 0
    # Latent pixels on each side that the patch embedding also sees (0: Wan's non-overlapping patches).
    # A token that sees its neighbours can move content by a patch without attention learning to.
    patch_context: int = 0
    # A learned embedding of each latent frame's index (< frame_positions), added to its time
    # embedding (0: none, as Wan). RoPE gives only relative positions, and a small model trained on
    # them barely tells a clip from its time reverse, so "moving left" looks like "moving right".
    frame_positions: int = 0

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)
        self.out_channels = self.out_channels or self.in_channels
        problem = _config_problem(self)
        if problem:
            raise ValueError(problem)

    @property
    def dim(self) -> int:
        """The hidden size: heads × head dim."""
        return self.num_attention_heads * self.attention_head_dim

    @property
    def latent_channels(self) -> int:
        """Channels of the `latents` argument: in_channels less the condition channels."""
        return self.in_channels - self.condition_channels

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiTConfig:
        """Build from a config.json mapping: `_`-prefixed metadata is ignored, unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in data if k not in known and not k.startswith("_"))
        if unknown:
            raise ConfigError(f"unknown DiT config keys {unknown}; known keys: {', '.join(sorted(known))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping with the same keys as diffusers' config plus ours."""
        data = asdict(self)
        data["patch_size"] = list(self.patch_size)
        return data


def _config_problem(c: DiTConfig) -> str | None:
    """The first thing wrong with a config, or None."""
    if len(c.patch_size) != 3 or min(c.patch_size) < 1:
        return f"patch_size must be three positive ints (t, h, w), got {c.patch_size}"
    if c.attention_head_dim % 2 or c.attention_head_dim < 6:
        return f"attention_head_dim must be even and >= 6 for 3D RoPE, got {c.attention_head_dim}"
    if c.qk_norm != "rms_norm_across_heads":
        return f"qk_norm must be 'rms_norm_across_heads' (the only Wan variant), got {c.qk_norm!r}"
    for name in ("image_dim", "added_kv_proj_dim", "pos_embed_seq_len"):
        if getattr(c, name) is not None:
            return f"{name}={getattr(c, name)}: Wan's CLIP image branch (I2V/FLF2V) is not supported"
    if not 0 <= c.condition_channels < c.in_channels:
        return f"condition_channels must be in [0, in_channels={c.in_channels}), got {c.condition_channels}"
    if c.num_actions < 0:
        return f"num_actions must be >= 0, got {c.num_actions}"
    if c.patch_context < 0:
        return f"patch_context must be >= 0, got {c.patch_context}"
    if c.frame_positions < 0:
        return f"frame_positions must be >= 0, got {c.frame_positions}"
    return None


class KVCache:
    """Per-block self-attention K/V of past frames (after RoPE) and the prompt's cross-attention K/V.

    Tensors are `(B, heads, tokens, head_dim)`, frame after frame. Keys carry RoPE at their absolute
    frame positions, so dropping frames never re-rotates anything. One cache serves one prompt:
    call `clear_text()` (or `clear()`) before a new one. Streaming, chunk after chunk:

        cache = model.new_cache()
        for each chunk:                       # latents of the new frames only
            x = model(x, t, text, cache=cache) for each denoising step  # reads the cache
            model(clean, 0, text, cache=cache, update_cache=True)       # appends the clean chunk
            cache.trim(keep_first=sink_frames, keep_last=window_frames)
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.clear()

    def clear(self) -> None:
        """Forget every frame and the prompt."""
        self.keys: list[Tensor | None] = [None] * self.num_layers
        self.values: list[Tensor | None] = [None] * self.num_layers
        self.positions: list[int] = []  # absolute frame index of each cached frame
        self.next_frame = 0  # where the next chunk starts, by default
        self.tokens_per_frame = 0
        self.clear_text()

    def clear_text(self) -> None:
        """Forget the prompt's cross-attention K/V; the next forward recomputes them."""
        self.text_kv: list[tuple[Tensor, Tensor]] | None = None
        self.text_mask: Tensor | None = None

    def __len__(self) -> int:
        """Cached frames."""
        return len(self.positions)

    def past(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """The cached (K, V) of one block, or None when empty."""
        k = self.keys[layer]
        return None if k is None else (k, self.values[layer])

    def append(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Add one block's K/V for new frames (call `advance` once all blocks are done)."""
        if self.keys[layer] is not None:
            k, v = torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v

    def advance(self, start_frame: int, num_frames: int, tokens_per_frame: int) -> None:
        """Record that frames [start_frame, start_frame + num_frames) are now cached."""
        self.positions += range(start_frame, start_frame + num_frames)
        self.next_frame = start_frame + num_frames
        self.tokens_per_frame = tokens_per_frame

    def trim(self, keep_first: int = 0, keep_last: int = 0) -> None:
        """Keep the first `keep_first` frames (attention sink) and the last `keep_last`; drop the rest."""
        if keep_first < 0 or keep_last < 0:
            raise ValueError(f"keep_first and keep_last must be >= 0, got {keep_first}, {keep_last}")
        n = len(self)
        if n <= keep_first + keep_last:
            return
        kept = list(range(keep_first)) + list(range(n - keep_last, n))
        for i in range(self.num_layers):
            self.keys[i] = self.keys[i].unflatten(2, (n, -1))[:, :, kept].flatten(2, 3)
            self.values[i] = self.values[i].unflatten(2, (n, -1))[:, :, kept].flatten(2, 3)
        self.positions = [self.positions[j] for j in kept]

    def batch_size(self) -> int | None:
        """The batch size of what is cached, or None when nothing is."""
        if self.keys[0] is not None:
            return self.keys[0].shape[0]
        return None if self.text_kv is None else self.text_kv[0][0].shape[0]


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input and weight dtypes (as in diffusers' Wan)."""

    def forward(self, x: Tensor) -> Tensor:
        """Normalise in fp32 and return fp32."""
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps)


class FP32RMSNorm(nn.RMSNorm):
    """RMSNorm computed in fp32, returned in the input's dtype (as in Wan's own code)."""

    def forward(self, x: Tensor) -> Tensor:
        """Normalise in fp32, cast back."""
        w = None if self.weight is None else self.weight.float()
        return F.rms_norm(x.float(), self.normalized_shape, w, self.eps).type_as(x)


class MLP(nn.Module):
    """linear_1 → activation → linear_2, named like diffusers' embedding MLPs."""

    def __init__(self, dim_in: int, dim: int, act: nn.Module) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim_in, dim)
        self.act = act
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the two layers."""
        return self.linear_2(self.act(self.linear_1(x)))


class ConditionEmbedder(nn.Module):
    """Wan's time MLP (plus the shared 6-way modulation projection) and text projection."""

    def __init__(self, c: DiTConfig) -> None:
        super().__init__()
        self.freq_dim = c.freq_dim
        self.time_embedder = MLP(c.freq_dim, c.dim, nn.SiLU())
        self.time_proj = nn.Linear(c.dim, 6 * c.dim)
        self.text_embedder = MLP(c.text_dim, c.dim, nn.GELU(approximate="tanh"))

    def sinusoid(self, t: Tensor) -> Tensor:
        """Wan's sinusoidal timestep features, [cos, sin], in fp32."""
        return _sinusoid(t, self.freq_dim)


class FeedForward(nn.Module):
    """Linear → GELU(tanh) → Linear, with diffusers' `net.0.proj` / `net.2` names."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        proj = nn.Module()
        proj.proj = nn.Linear(dim, hidden)
        self.net = nn.ModuleList([proj, nn.Dropout(0.0), nn.Linear(hidden, dim)])

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP."""
        return self.net[2](F.gelu(self.net[0].proj(x), approximate="tanh"))


class Attention(nn.Module):
    """Projections of one Wan attention layer; q/k RMSNorm runs across all heads before the split."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.norm_q = FP32RMSNorm(dim, eps=eps)
        self.norm_k = FP32RMSNorm(dim, eps=eps)

    def split(self, x: Tensor) -> Tensor:
        """(B, L, D) → (B, heads, L, head_dim)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def query(self, x: Tensor) -> Tensor:
        """Normalised queries, split into heads."""
        return self.split(self.norm_q(self.to_q(x)))

    def key_value(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised keys and values, split into heads."""
        return self.split(self.norm_k(self.to_k(x))), self.split(self.to_v(x))

    def out(self, o: Tensor) -> Tensor:
        """(B, heads, L, head_dim) → output projection."""
        return self.to_out[0](o.transpose(1, 2).flatten(2))


def _rope_tables(head_dim: int, grid: tuple[int, int, int], start_frame: int, device: torch.device):
    """cos and sin of Wan's 3D RoPE angles, (tokens, head_dim / 2) fp32, for frames from `start_frame`."""
    frames, h, w = grid
    hw_dim = 2 * (head_dim // 6)
    positions = (torch.arange(start_frame, start_frame + frames), torch.arange(h), torch.arange(w))
    axes = []
    for dim, pos in zip((head_dim - 2 * hw_dim, hw_dim, hw_dim), positions, strict=True):
        # fp64 on the CPU like diffusers' table, but for any position: no table bounds the length.
        inv_freq = 1.0 / 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        axes.append(torch.outer(pos.double(), inv_freq))
    t, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None]
    angles = torch.cat([a.expand(frames, h, w, -1) for a in (t, y, x)], dim=-1).flatten(0, 2)
    return angles.cos().float().to(device), angles.sin().float().to(device)


def _modulation_table(rows: int, dim: int) -> nn.Parameter:
    """A (1, rows, dim) learned shift/scale/gate table, N(0, 1/dim) as in Wan."""
    table = torch.empty(1, rows, dim)
    # from_pretrained builds on the meta device, where sampling or arithmetic first imports torch's
    # meta kernels (about 0.8 s on the dev CPU); the loaded weights replace the table anyway.
    if not table.is_meta:
        table.normal_().div_(dim**0.5)
    return nn.Parameter(table)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive channel pairs of (B, heads, L, head_dim) by the RoPE angles."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).type_as(x)


def _chunked_attention(q: Tensor, k: Tensor, v: Tensor, chunk_tokens: int | None) -> Tensor:
    """SDPA where the new queries (the last q.shape[2] keys) see everything before their chunk's end."""
    past, total = k.shape[2] - q.shape[2], q.shape[2]
    if chunk_tokens is None or chunk_tokens >= total:
        return F.scaled_dot_product_attention(q, k, v)
    outs = []
    for s in range(0, total, chunk_tokens):
        end = past + min(s + chunk_tokens, total)
        outs.append(
            F.scaled_dot_product_attention(q[:, :, s : s + chunk_tokens], k[:, :, :end], v[:, :, :end])
        )
    return torch.cat(outs, dim=2)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """x * (1 + scale) + shift with (B, F, 1, D) modulation over (B, F·S, D) tokens (F may be 1)."""
    y = x.unflatten(1, (shift.shape[1], -1)) * (1 + scale) + shift
    return y.flatten(1, 2)


def _gate(y: Tensor, gate: Tensor) -> Tensor:
    """y * gate with (B, F, 1, D) gates over (B, F·S, D) tokens."""
    return (y.unflatten(1, (gate.shape[1], -1)) * gate).flatten(1, 2)


class DiTBlock(nn.Module):
    """Wan block: modulated self-attention with RoPE, cross-attention to text, modulated MLP."""

    def __init__(self, c: DiTConfig) -> None:
        super().__init__()
        self.norm1 = FP32LayerNorm(c.dim, c.eps, elementwise_affine=False)
        self.attn1 = Attention(c.dim, c.num_attention_heads, c.eps)
        self.attn2 = Attention(c.dim, c.num_attention_heads, c.eps)
        self.norm2 = FP32LayerNorm(c.dim, c.eps) if c.cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(c.dim, c.ffn_dim)
        self.norm3 = FP32LayerNorm(c.dim, c.eps, elementwise_affine=False)
        self.scale_shift_table = _modulation_table(6, c.dim)

    def forward(
        self,
        x: Tensor,
        text_kv: tuple[Tensor, Tensor],
        text_mask: Tensor | None,
        temb: Tensor,
        rope: tuple[Tensor, Tensor],
        chunk_tokens: int | None,
        past: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run the block on (B, L, D) tokens; returns them and this call's self-attention K and V."""
        mod = (self.scale_shift_table + temb.float()).unsqueeze(3).unbind(2)  # 6 × (B, F, 1, D)
        shift, scale, gate, c_shift, c_scale, c_gate = mod

        h = _modulate(self.norm1(x.float()), shift, scale).type_as(x)
        q = _rotate(self.attn1.query(h), *rope)
        k, v = self.attn1.key_value(h)
        k = _rotate(k, *rope)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        attn = self.attn1.out(_chunked_attention(q, keys, values, chunk_tokens))
        x = (x.float() + _gate(attn, gate)).type_as(x)

        q = self.attn2.query(self.norm2(x.float()).type_as(x))
        tk, tv = text_kv
        o = F.scaled_dot_product_attention(q, tk, tv, attn_mask=text_mask)
        x = x + self.attn2.out(o)

        h = _modulate(self.norm3(x.float()), c_shift, c_scale).type_as(x)
        x = (x.float() + _gate(self.ffn(h).float(), c_gate)).type_as(x)
        return x, k, v


class VideoDiT(nn.Module):
    """The video denoiser: bidirectional or block-causal, full-sequence or streamed through a KVCache."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        pt, ph, pw = c.patch_size
        context = c.patch_context
        self.patch_embedding = nn.Conv3d(
            c.in_channels,
            c.dim,
            kernel_size=(pt, ph + 2 * context, pw + 2 * context),
            stride=c.patch_size,
            padding=(0, context, context),
        )
        self.condition_embedder = ConditionEmbedder(c)
        self.action_embedder = nn.Embedding(c.num_actions, c.dim) if c.num_actions else None
        if self.action_embedder is not None:
            # Random, on the scale of the time embedding: from zeros, two keys that move the picture in
            # opposite directions start equal and stay nearly so (a saddle; the Doom turns never parted).
            # A pretrained model that gains actions gets zeros instead (_adapt_new_inputs).
            nn.init.normal_(self.action_embedder.weight, std=0.2)
        self.frame_embedder = nn.Embedding(c.frame_positions, c.dim) if c.frame_positions else None
        if self.frame_embedder is not None:
            # Random like the actions, for the same reason: from zeros, every frame starts alike.
            nn.init.normal_(self.frame_embedder.weight, std=0.2)
        self.blocks = nn.ModuleList([DiTBlock(c) for _ in range(c.num_layers)])
        self.norm_out = FP32LayerNorm(c.dim, c.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(c.dim, c.out_channels * math.prod(c.patch_size))
        self.scale_shift_table = _modulation_table(2, c.dim)
        self.gradient_checkpointing = False

    def new_cache(self) -> KVCache:
        """An empty KV cache for streaming with this model."""
        return KVCache(self.config.num_layers)

    def forward(
        self,
        latents: Tensor,
        timesteps: Tensor | float,
        text_states: Tensor,
        *,
        text_mask: Tensor | None = None,
        condition: Tensor | None = None,
        actions: Tensor | None = None,
        attention: str = "bidirectional",
        chunk_frames: int = 1,
        cache: KVCache | None = None,
        start_frame: int | None = None,
        update_cache: bool = False,
    ) -> Tensor:
        """Predict (B, out_channels, F, H, W) from latents (B, C, F, H, W) at Wan timesteps (0..1000).

        timesteps: a number, (B,) or (B, F) per latent frame (per token frame if pt > 1).
        text_mask: (B, L) bool, True = real token.
        actions: (B, F) ints. With a cache, latents are the new frames only, placed at `start_frame`
        (default cache.next_frame); they attend to the cache and, if `update_cache`, are appended to it.
        Block-causal chunks are counted from the first new frame.
        """
        c = self.config
        timesteps = torch.as_tensor(timesteps, device=latents.device)
        timesteps = timesteps.expand(latents.shape[0]) if timesteps.ndim == 0 else timesteps
        _raise(
            _input_problem(c, latents, timesteps, text_states, text_mask, condition, actions)
            or _attention_problem(attention, chunk_frames)
        )
        b, _, f, h, w = latents.shape
        grid = (-(-f // c.patch_size[0]), h // c.patch_size[1], w // c.patch_size[2])
        tokens_per_frame = grid[1] * grid[2]
        start = start_frame if start_frame is not None else cache.next_frame if cache is not None else 0
        _raise(_cache_problem(cache, start, b, tokens_per_frame, update_cache))
        repeats = -f % c.patch_size[0]
        if repeats and start > 0:
            _raise(
                f"{f} latent frames after the start must be a multiple of the time patch {c.patch_size[0]}"
            )
        if condition is not None:
            latents = torch.cat([latents, condition.to(latents.dtype)], dim=1)
        if repeats:
            latents = torch.cat([latents[:, :, :1].expand(-1, -1, repeats, -1, -1), latents], dim=2)

        x = self.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        _raise(_frame_position_problem(c, start, grid[0]))
        temb, temb6 = self._time_embedding(timesteps, actions, b, start, grid[0])
        text_kv, text_mask = self._text(text_states, text_mask, cache)
        rope = _rope_tables(c.attention_head_dim, grid, start, latents.device)
        chunk = chunk_frames * tokens_per_frame if attention == "block_causal" else None

        checkpointing = self.gradient_checkpointing and torch.is_grad_enabled() and cache is None
        for i, block in enumerate(self.blocks):
            past = cache.past(i) if cache is not None else None
            args = (x, text_kv[i], text_mask, temb6, rope, chunk, past)
            x, k, v = checkpoint(block, *args, use_reentrant=False) if checkpointing else block(*args)
            if cache is not None and update_cache:
                cache.append(i, k, v)
        if cache is not None and update_cache:
            cache.advance(start, grid[0], tokens_per_frame)

        shift, scale = (self.scale_shift_table + temb.unsqueeze(2)).unsqueeze(3).unbind(2)
        x = _modulate(self.norm_out(x.float()), shift, scale).type_as(x)
        return self._unpatchify(self.proj_out(x), grid)[:, :, repeats:]

    def _time_embedding(
        self, timesteps: Tensor, actions: Tensor | None, batch: int, first_frame: int, frames: int
    ) -> tuple[Tensor, Tensor]:
        """Time (+ action, + frame index) embedding (B, F or 1, D) and its block modulation (B, F or 1, 6, D)."""
        emb = self.condition_embedder
        t = timesteps.reshape(batch, -1)
        # The time path is a few rows: keeping it out of autocast keeps the modulation precise for free.
        with torch.autocast(t.device.type, enabled=False):
            temb = emb.time_embedder(emb.sinusoid(t).to(emb.time_embedder.linear_1.weight.dtype))
            if actions is not None and self.action_embedder is not None:
                temb = temb + self.action_embedder(actions).to(temb.dtype)
            if self.frame_embedder is not None:
                index = torch.arange(first_frame, first_frame + frames, device=t.device)
                temb = temb + self.frame_embedder(index).to(temb.dtype)
            temb6 = emb.time_proj(F.silu(temb)).unflatten(2, (6, -1))
        return temb, temb6

    def _text(
        self, text_states: Tensor, text_mask: Tensor | None, cache: KVCache | None
    ) -> tuple[list[tuple[Tensor, Tensor]], Tensor | None]:
        """Each block's cross-attention K/V and the SDPA text mask, from the cache when it has them."""
        if cache is not None and cache.text_kv is not None:
            return cache.text_kv, cache.text_mask
        text = self.condition_embedder.text_embedder(text_states)
        text_kv = [block.attn2.key_value(text) for block in self.blocks]
        mask = None if text_mask is None else text_mask[:, None, None, :]
        if cache is not None:
            cache.text_kv, cache.text_mask = text_kv, mask
        return text_kv, mask

    def _unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, tokens, pt·ph·pw·C) → (B, C, F, H, W)."""
        pt, ph, pw = self.config.patch_size
        x = x.reshape(x.shape[0], *grid, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def save_pretrained(self, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write `config.json` and `model.safetensors` (cast to `dtype`, e.g. float16) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(dtype or v.dtype).contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        config = {"_class_name": type(self).__name__, **self.config.to_dict()}
        atomic_write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        **overrides: Any,
    ) -> VideoDiT:
        """Load our folder or a diffusers Wan transformer folder (single or sharded safetensors).

        `dtype=None` keeps the file's dtype. `overrides` replace config keys. Adding `num_actions` or
        `condition_channels` to a checkpoint that lacks them starts the new weights at zero, so the
        loaded model still behaves as saved; an added `frame_positions` table starts near it.
        """
        folder = Path(folder)
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise ConfigError(f"{folder}: no config.json (not a model folder)")
        data = json.loads(config_path.read_text(encoding="utf-8"))
        try:
            config = DiTConfig.from_dict({**data, **overrides})
        except (ValueError, TypeError, ConfigError) as e:
            raise ConfigError(f"{config_path}: {e}") from None
        state = _read_weights(folder)
        with torch.device("meta"):
            model = cls(config)
        state = _adapt_new_inputs(state, model)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise ConfigError(
                f"{folder}: weights do not fit the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model.to(device=device, dtype=dtype)


def _small_frame_table(frames: int, dim: int, rms: float = 0.1) -> Tensor:
    """Sinusoids of the frame index at `rms`, half a fresh table's: a trained model that gains a frame
    table starts near its saved self (the bundled DiT's output moves 8%; its time embedding's rms is
    0.45). Zeros would keep frame f and its mirror alike for good, since a model trained without the
    table treats a clip and its time reverse nearly alike."""
    table = _sinusoid(torch.arange(frames), dim, base=frames)
    return table * rms / table.square().mean().sqrt()


def _sinusoid(t: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """[cos, sin] of `t` at `dim` // 2 frequencies from 1 down to 1 / `base`, (..., dim) fp32."""
    half = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[..., None] * freqs
    return F.pad(torch.cat([angles.cos(), angles.sin()], dim=-1), (0, dim % 2))


def _raise(problem: str | None) -> None:
    """Raise ValueError(problem) if there is one."""
    if problem:
        raise ValueError(problem)


def _input_problem(
    c: DiTConfig,
    latents: Tensor,
    timesteps: Tensor,
    text_states: Tensor,
    text_mask: Tensor | None,
    condition: Tensor | None,
    actions: Tensor | None,
) -> str | None:
    """The first thing wrong with forward's tensors, or None."""
    if latents.ndim != 5:
        return f"latents must be (B, C, F, H, W), got shape {tuple(latents.shape)}"
    b, ch, f, h, w = latents.shape
    frames = -(-f // c.patch_size[0])  # token frames: the first frame fills a group alone if need be
    if ch != c.latent_channels:
        return f"latents have {ch} channels, the model takes {c.latent_channels} (in less condition channels)"
    if h % c.patch_size[1] or w % c.patch_size[2]:
        return f"latent size H×W = {h}×{w} is not divisible by the patch's {c.patch_size[1:]}"
    if timesteps.ndim == 0 or tuple(timesteps.shape) not in ((b,), (b, frames)):
        return f"timesteps must be (B,) = ({b},) or (B, F) = ({b}, {frames}), got {tuple(timesteps.shape)}"
    if text_states.ndim != 3 or text_states.shape[0] != b or text_states.shape[2] != c.text_dim:
        return f"text_states must be (B={b}, L, text_dim={c.text_dim}), got {tuple(text_states.shape)}"
    if text_mask is not None and (text_mask.dtype != torch.bool or text_mask.shape != text_states.shape[:2]):
        expected = tuple(text_states.shape[:2])
        return f"text_mask must be bool (B, L) = {expected}, got {text_mask.dtype} {tuple(text_mask.shape)}"
    if text_mask is not None and not text_mask.any(dim=1).all():
        return "text_mask hides every text token of some sample; keep at least one"
    if (condition is None) != (c.condition_channels == 0):
        return f"condition must be given exactly when condition_channels > 0 (it is {c.condition_channels})"
    if condition is not None and tuple(condition.shape) != (b, c.condition_channels, f, h, w):
        return f"condition must be {(b, c.condition_channels, f, h, w)}, got {tuple(condition.shape)}"
    if actions is not None and c.num_actions == 0:
        return "actions given, but the model has no action embedding (num_actions=0)"
    if actions is not None and (actions.dtype.is_floating_point or tuple(actions.shape) != (b, frames)):
        return f"actions must be integer (B, F) = ({b}, {frames}), got {actions.dtype} {tuple(actions.shape)}"
    if actions is not None and actions.numel() and (actions.min() < 0 or actions.max() >= c.num_actions):
        return f"actions must lie in [0, {c.num_actions}), got {actions.min()}..{actions.max()}"
    return None


def _frame_position_problem(c: DiTConfig, start: int, frames: int) -> str | None:
    """Why frames start..start+frames have no frame embedding, or None."""
    if c.frame_positions and start + frames > c.frame_positions:
        return (
            f"latent frames {start}..{start + frames - 1} reach past the frame embedding's "
            f"{c.frame_positions} positions (dit.frame_positions)"
        )
    return None


def _attention_problem(attention: str, chunk_frames: int) -> str | None:
    """What is wrong with the attention arguments, or None."""
    if attention not in ATTENTION_MODES:
        return f"attention must be one of {ATTENTION_MODES}, got {attention!r}"
    if not isinstance(chunk_frames, int) or chunk_frames < 1:
        return f"chunk_frames must be a positive int, got {chunk_frames!r}"
    return None


def _cache_problem(
    cache: KVCache | None, start: int, batch: int, tokens_per_frame: int, update: bool
) -> str | None:
    """The first reason the cache cannot take this call, or None."""
    if start < 0:
        return f"start_frame must be >= 0, got {start}"
    if cache is None:
        return "update_cache=True needs a cache" if update else None
    if cache.batch_size() not in (None, batch):
        return f"the cache holds batch size {cache.batch_size()}, the latents {batch}"
    if len(cache) and cache.tokens_per_frame != tokens_per_frame:
        return f"the cache holds {cache.tokens_per_frame} tokens per frame, these latents {tokens_per_frame}"
    if start < cache.next_frame:
        return f"start_frame {start} lies inside the cache, which ends at frame {cache.next_frame}"
    return None


def _read_weights(folder: Path) -> dict[str, Tensor]:
    """All tensors of a folder: one known safetensors file, or the shards its index names."""
    for name in WEIGHT_FILES:
        index = folder / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            state = {k: v for shard in shards for k, v in load_file(str(folder / shard)).items()}
            break
        if (folder / name).is_file():
            state = load_file(str(folder / name))
            break
    else:
        raise ConfigError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES)}, or a sharded index)")
    return {k: v for k, v in state.items() if not any(s in k for s in IGNORED_WEIGHTS)}


def _adapt_new_inputs(state: dict[str, Tensor], model: VideoDiT) -> dict[str, Tensor]:
    """Fill weights for inputs the checkpoint lacks: actions, condition channels, frame positions."""
    c = model.config
    dtype = next(iter(state.values())).dtype
    if model.action_embedder is not None and "action_embedder.weight" not in state:
        state["action_embedder.weight"] = torch.zeros(c.num_actions, c.dim, dtype=dtype)
    if model.frame_embedder is not None and "frame_embedder.weight" not in state:
        state["frame_embedder.weight"] = _small_frame_table(c.frame_positions, c.dim).to(dtype)
    w = state.get("patch_embedding.weight")
    if w is not None and w.shape[1] == c.latent_channels < c.in_channels:
        extra = w.new_zeros(w.shape[0], c.condition_channels, *w.shape[2:])
        state["patch_embedding.weight"] = torch.cat([w, extra], dim=1)
    return state
