"""Does a text-to-video pipeline know which way time runs? Its loss on clips and on the same clips reversed.

Shapes-world clips whose one object moves in a direction (left, right, up, down, growing,
shrinking) are encoded with each pipeline's VAE, noised to σ, and scored with the flow-matching
loss twice with the same noise and caption: as rendered, and reversed in time. Reversed, a clip
shows the opposite motion of its caption ("moving left" runs right), so a model that reads the
motion's direction from the prompt does worse on it. One that cannot tell a clip from its time
reverse scores both the same, and "reversed worse" stays near 50%.

A second table asks the DiT directly, from pure noise (σ = 1), where only the prompt can decide
anything: how much does its output change (relative norm, same noise) when one word of "a red
circle moving left" changes? A model that reads the direction moves as much for "right" as for
"up"; one that reads only the kind of motion barely moves for "right".

    python benchmarks/time_direction.py kinema/assets/shapes-t2v runs/t2v_shapes/pipeline
"""

from __future__ import annotations

import argparse

import torch

from kinema.data.dataset import to_tensor
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.diffusion.flow import add_noise, velocity_target
from kinema.generate.pipeline import Pipeline, first_frame_condition

DIRECTED = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")


def directed_clips(count: int, seed: int, split: str) -> tuple[torch.Tensor, list[str]]:
    """`count` one-object clips whose motion has a direction: videos (N, 3, T, H, W) in [-1, 1] and captions."""
    config = ShapesConfig(max_objects=1, split=split)
    videos, captions, index = [], [], 0
    while len(videos) < count:
        clip = make_clip(config, index, seed=seed)
        index += 1
        if clip.objects[0].motion in DIRECTED:
            videos.append(to_tensor(clip.frames))
            captions.append(clip.caption)
    return torch.stack(videos), captions


@torch.no_grad()
def encode(pipeline: Pipeline, videos: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, ...]:
    """The clips' normalised latents and their captions' text states and mask, with the pipeline's encoders."""
    x0 = pipeline.vae.normalize(pipeline.vae.encode(videos).mean)
    return x0, *pipeline.text_encoder.encode(captions)


@torch.no_grad()
def direction_losses(
    pipeline: Pipeline, x0: torch.Tensor, states: torch.Tensor, mask: torch.Tensor, sigma: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip flow loss (N,) of the clips as rendered and reversed in time, with the same noise."""
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    sigmas = torch.full((len(x0),), sigma)
    condition = None
    if pipeline.dit.config.condition_channels:
        no_frame = torch.zeros(len(x0), dtype=torch.bool)
        condition = first_frame_condition(x0[:, :, :1], no_frame, frames=x0.shape[2])

    def loss(latents: torch.Tensor) -> torch.Tensor:
        out = pipeline.dit(
            add_noise(latents, noise, sigmas), sigmas * 1000.0, states, text_mask=mask, condition=condition
        )
        return (out.float() - velocity_target(latents, noise)).square().mean(dim=(1, 2, 3, 4))

    return loss(x0), loss(x0.flip(2))


WORD_SWAPS = {
    "left → right": ("a red circle moving left", "a red circle moving right"),
    "up → down": ("a red circle moving up", "a red circle moving down"),
    "growing → shrinking": ("a red circle growing", "a red circle shrinking"),
    "left → up": ("a red circle moving left", "a red circle moving up"),
    "circle → square": ("a red circle moving left", "a red square moving left"),
    "red → blue": ("a red circle moving left", "a blue circle moving left"),
}


@torch.no_grad()
def word_sensitivity(pipeline: Pipeline, seed: int, samples: int = 4) -> dict[str, float]:
    """Relative change of the DiT's output at σ = 1 (same noise) when one prompt word changes."""
    dit, frames = pipeline.dit, pipeline.info.frames
    shape = pipeline.vae.latent_shape(frames, pipeline.info.height, pipeline.info.width)
    noise = torch.randn(
        samples, dit.config.latent_channels, *shape[1:], generator=torch.Generator().manual_seed(seed)
    )
    extra = {}
    if dit.config.condition_channels:
        extra["condition"] = noise.new_zeros(samples, dit.config.condition_channels, *noise.shape[2:])
    ones = torch.ones(samples)

    def output(prompt: str) -> torch.Tensor:
        states, mask = (t.expand(samples, -1, *t.shape[2:]) for t in pipeline.text_encoder.encode([prompt]))
        return dit(noise, ones * 1000.0, states, text_mask=mask, **extra).float()

    changes = {}
    for name, (a, b) in WORD_SWAPS.items():
        before = output(a)
        changes[name] = ((output(b) - before).norm() / before.norm()).item()
    return changes


def main() -> None:
    """Print, per pipeline and noise level, the mean loss forward and reversed, and how often reversed is worse."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipelines", nargs="+", help="pipeline folders (vae/, dit/, kinema.json)")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--sigmas", default="0.5,0.8,0.95")
    parser.add_argument("--split", default="train", choices=("train", "test", "all"))
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    videos, captions = directed_clips(args.clips, args.seed, args.split)
    print(f"{args.clips} one-object clips with a directed motion ({args.split} split, seed {args.seed})")
    print(f"{'pipeline':40s} {'sigma':>5s} {'forward':>8s} {'reversed':>8s} {'reversed worse':>15s}")
    for folder in args.pipelines:
        pipeline = Pipeline.from_pretrained(folder)
        encoded = encode(pipeline, videos, captions)
        for sigma in (float(s) for s in args.sigmas.split(",")):
            forward, reverse = direction_losses(pipeline, *encoded, sigma, args.seed)
            worse = (reverse > forward).float().mean().item()
            print(f"{folder:40s} {sigma:5.2f} {forward.mean():8.4f} {reverse.mean():8.4f} {worse:15.0%}")
    print("\nHow much the DiT's output at σ = 1 changes when one word of the prompt changes (same noise)")
    print(f"{'pipeline':40s} " + " ".join(f"{name:>19s}" for name in WORD_SWAPS))
    for folder in args.pipelines:
        changes = word_sensitivity(Pipeline.from_pretrained(folder), args.seed)
        print(f"{folder:40s} " + " ".join(f"{change:19.1%}" for change in changes.values()))


if __name__ == "__main__":
    main()
