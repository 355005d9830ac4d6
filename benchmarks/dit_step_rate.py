"""Training steps per second of shapes-world DiT sizes, measured one after another in one run.

Each size takes AdamW steps on random 17-frame 64×64 latents (8 × 17 × 16 × 16, with the
first-frame condition channels), bf16 autocast on CUDA and fp32 on the CPU. Prints steps/s,
clips/s and peak GPU memory, so sizes can be weighed against each other on the same machine.

    python benchmarks/dit_step_rate.py --device cuda            # batch 64
    python benchmarks/dit_step_rate.py --batch 16 --steps 3     # the dev CPU
"""

from __future__ import annotations

import argparse
import time

import torch

from kinema.models.dit import DiTConfig, VideoDiT

SHAPES_DIT = {"in_channels": 17, "out_channels": 8, "condition_channels": 9, "text_dim": 384, "freq_dim": 256}
SIZES = {
    "shipped: dim 192, 8 layers, 1x4x4 patches": {
        "patch_size": (1, 4, 4),
        "num_attention_heads": 3,
        "ffn_dim": 768,
        "num_layers": 8,
    },
    "dim 256, 10 layers, 1x2x2 patches": {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 4,
        "ffn_dim": 1024,
        "num_layers": 10,
    },
    "dim 384, 12 layers, 1x2x2 patches": {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 6,
        "ffn_dim": 1536,
        "num_layers": 12,
    },
}
LATENT = (8, 17, 16, 16)
TEXT_TOKENS = 32


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so host clocks time it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_rate(size: dict, device: torch.device, batch: int, steps: int) -> tuple[float, float]:
    """(steps/s, M params) of AdamW training steps for one DiT size."""
    torch.manual_seed(0)
    model = VideoDiT(DiTConfig(**SHAPES_DIT, **size, attention_head_dim=64)).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    latents = torch.randn(batch, *LATENT, device=device)
    condition = torch.randn(batch, SHAPES_DIT["condition_channels"], *LATENT[1:], device=device)
    text = torch.randn(batch, TEXT_TOKENS, SHAPES_DIT["text_dim"], device=device)
    timesteps = torch.rand(batch, device=device) * 1000
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")

    def train_step() -> None:
        with autocast:
            out = model(latents, timesteps, text, condition=condition)
        (out.float() - latents).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):  # warm up
        train_step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    synchronize(device)
    return steps / (time.perf_counter() - start), sum(p.numel() for p in model.parameters()) / 1e6


def main() -> None:
    """Parse arguments and time every size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, batch {args.batch}")
    for name, size in SIZES.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        rate, params = step_rate(size, device, args.batch, args.steps)
        memory = (
            f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
        )
        print(f"{name}: {params:.1f}M params, {rate:.2f} steps/s, {rate * args.batch:.0f} clips/s{memory}")


if __name__ == "__main__":
    main()
