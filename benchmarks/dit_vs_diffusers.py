"""Time Kinema's VideoDiT against diffusers' WanTransformer3DModel at the same config, side by side.

Both models hold the same weights (ours loads diffusers' state dict), take the same inputs and run
interleaved, A then B, so machine noise hits both alike. Prints forward and forward + backward times
at two sizes and the ratio ours / diffusers (below 1.0: ours is faster).

    python benchmarks/dit_vs_diffusers.py                  # CPU, fp32
    python benchmarks/dit_vs_diffusers.py --device cuda    # bf16 autocast
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import WanTransformer3DModel

from kinema.models.dit import DiTConfig, VideoDiT

# name -> (Wan config, latent (C, F, H, W), batch)
SIZES: dict[str, tuple[dict, tuple[int, int, int, int], int]] = {
    "demo (shapes DiT, 9M)": (
        {
            "patch_size": (1, 8, 8),
            "num_attention_heads": 4,
            "attention_head_dim": 64,
            "in_channels": 17,
            "out_channels": 8,
            "text_dim": 384,
            "freq_dim": 256,
            "ffn_dim": 1024,
            "num_layers": 8,
        },
        (17, 17, 16, 16),
        32,
    ),
    "wide (dim 768, 12 layers, 100M)": (
        {
            "patch_size": (1, 2, 2),
            "num_attention_heads": 6,
            "attention_head_dim": 128,
            "in_channels": 16,
            "out_channels": 16,
            "text_dim": 768,
            "freq_dim": 256,
            "ffn_dim": 3072,
            "num_layers": 12,
        },
        (16, 5, 16, 16),
        2,
    ),
}
TEXT_TOKENS = 32


def time_call(fn: Callable[[], None], device: torch.device) -> float:
    """Seconds one call of fn takes, synchronising CUDA around it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(name: str, size: tuple, device: torch.device, repeats: int) -> None:
    """Print forward and forward + backward medians for both models and their ratio."""
    config, latent_shape, batch = size
    torch.manual_seed(0)
    theirs = WanTransformer3DModel(**config).to(device)
    ours = VideoDiT(DiTConfig(**config)).to(device)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    latents = torch.randn(batch, *latent_shape, device=device)
    timesteps = torch.rand(batch, device=device) * 1000
    text = torch.randn(batch, TEXT_TOKENS, config["text_dim"], device=device)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=device.type == "cuda")

    forwards = {
        "ours": (ours, lambda: ours(latents, timesteps, text)),
        "diffusers": (theirs, lambda: theirs(latents, timesteps, text, return_dict=False)[0]),
    }

    def inference(model: torch.nn.Module, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), autocast:
                forward()

        return run

    def training(model: torch.nn.Module, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with autocast:
                loss = forward().float().square().mean()
            loss.backward()
            model.zero_grad(set_to_none=True)

        return run

    params = sum(p.numel() for p in ours.parameters()) / 1e6
    tokens = math.prod(latent_shape[1:]) // math.prod(config["patch_size"])
    print(f"\n{name}: {params:.1f}M params, batch {batch} x {tokens} tokens")
    for label, make in (("forward", inference), ("forward+backward", training)):
        runs = {key: make(model, forward) for key, (model, forward) in forwards.items()}
        for run in runs.values():  # warm up
            run()
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(repeats):
            for key, run in runs.items():
                times[key].append(time_call(run, device))
        ours_s, theirs_s = (statistics.median(times[k]) for k in ("ours", "diffusers"))
        print(
            f"  {label:<17} ours {ours_s * 1e3:8.1f} ms   diffusers {theirs_s * 1e3:8.1f} ms   "
            f"ratio {ours_s / theirs_s:.3f}"
        )


def main() -> None:
    """Parse arguments and run every size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    for name, size in SIZES.items():
        compare(name, size, device, args.repeats)


if __name__ == "__main__":
    main()
