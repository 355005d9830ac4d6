"""Do a world model's keys matter? Its next-frame loss with the real keys, with keys swapped, and with none.

For windows of held-out recorded frames, the past is kept nearly clean (σ = 0.05, as the stream
holds it), the last frame is noised to σ, and each DiT's flow-matching loss on that last frame is
measured three times with the same noise. Frame stacking sees each window's first frame after the
recorded frame before it, as in training (zeros only at a recording's start):

- real: the recorded keys;
- swapped: the pairs in `--swap` exchanged (for ViZDoom's turns, `--swap 2:3`), so a model that
  knows which way a key moves the view does worse;
- none: every key the no-op (0).

A model that ignores its keys scores the same in all three columns. Only windows whose last key is
in a swapped pair count, so the gap is not diluted by frames the swap leaves alone.

    python benchmarks/world_keys.py runs/world_doom/final runs/other/final \\
        --vae runs/vae_doom/final --manifest runs/doom_test/manifest.jsonl --swap 2:3
"""

from __future__ import annotations

import argparse

import torch

from kinema.data.dataset import resize_crop, to_tensor
from kinema.data.manifest import clip_path, read_manifest
from kinema.diffusion.flow import add_noise, velocity_target
from kinema.generate.world import null_text
from kinema.io.video import read_video
from kinema.models.dit import VideoDiT
from kinema.models.vae import load_vae
from kinema.train.world import stacked_condition

CONTEXT_SIGMA = 0.05


def swap_pairs(text: list[str]) -> dict[int, int]:
    """'2:3' pairs to a key map that exchanges each pair."""
    mapping = {}
    for pair in text:
        a, b = (int(k) for k in pair.split(":"))
        mapping |= {a: b, b: a}
    return mapping


@torch.no_grad()
def windows(vae_folder: str, manifest: str, size: int, frames: int, keys: set[int], stride: int):
    """Held-out windows ending in `keys`: normalised latents (N, C, frames, h, w), keys (N, frames),
    and the batch entries `before` (N, C, 1, h, w) and `has_before` (N,) that frame stacking reads."""
    vae = load_vae(vae_folder).float().eval()
    latents, actions, before, has_before = [], [], [], []
    for record in read_manifest(manifest):
        video, _ = read_video(clip_path(record, manifest))
        z = vae.normalize(vae.encode(to_tensor(resize_crop(video, size, size))[None]).mean)[0]
        for start in range(0, len(video) - frames + 1, stride):
            if record.actions[start + frames - 1] in keys:
                latents.append(z[:, start : start + frames])
                actions.append(record.actions[start : start + frames])
                before.append(z[:, start - 1 : start] if start else torch.zeros_like(z[:, :1]))
                has_before.append(start > 0)
    context = {"before": torch.stack(before), "has_before": torch.tensor(has_before)}
    return torch.stack(latents), torch.tensor(actions), context


@torch.no_grad()
def last_frame_loss(
    dit: VideoDiT,
    x0: torch.Tensor,
    noise: torch.Tensor,
    sigma_last: float,
    keys: torch.Tensor,
    context: dict[str, torch.Tensor],
) -> float:
    """Flow-matching loss on the last frame, the past held at CONTEXT_SIGMA."""
    sigma = torch.full((len(x0), x0.shape[2]), CONTEXT_SIGMA)
    sigma[:, -1] = sigma_last
    noisy = add_noise(x0, noise, sigma)
    torch.manual_seed(0)  # the same noise on the frame before, for every model and key set
    condition = stacked_condition(context, noisy, sigma) if dit.config.condition_channels else None
    out = dit(
        noisy,
        sigma * 1000,
        null_text(len(x0)),
        condition=condition,
        actions=keys,
        attention="block_causal",
        chunk_frames=1,
    )
    return float((out - velocity_target(x0, noise))[:, :, -1].square().mean())


def main() -> None:
    """Print each DiT's last-frame loss with real, swapped and no keys at a few noise levels."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dits", nargs="+", help="world DiT folders (OUT/final or OUT/pipeline/dit)")
    parser.add_argument("--vae", required=True, help="the world model's VAE folder")
    parser.add_argument("--manifest", required=True, help="a held-out recording's manifest.jsonl")
    parser.add_argument("--swap", nargs="+", required=True, help="key pairs to exchange, e.g. 2:3")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8, help="window: the past and the new frame")
    parser.add_argument("--stride", type=int, default=12, help="frames between window starts")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.8, 1.0])
    args = parser.parse_args()
    swap = swap_pairs(args.swap)
    x0, keys, context = windows(args.vae, args.manifest, args.size, args.frames, set(swap), args.stride)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    swapped = keys.clone().apply_(lambda k: swap.get(k, k))
    print(f"{len(x0)} held-out windows of {args.frames} frames ending in keys {sorted(swap)}")
    print(f"{'model':40} {'σ':>4} {'real':>7} {'swapped':>8} {'none':>7} {'gap':>7}")
    for folder in args.dits:
        dit = VideoDiT.from_pretrained(folder, dtype=torch.float32).eval()
        for s in args.sigmas:
            real, other, none = (
                last_frame_loss(dit, x0, noise, s, k, context)
                for k in (keys, swapped, torch.zeros_like(keys))
            )
            print(f"{folder[-40:]:40} {s:4.2f} {real:7.3f} {other:8.3f} {none:7.3f} {other - real:7.3f}")


if __name__ == "__main__":
    main()
