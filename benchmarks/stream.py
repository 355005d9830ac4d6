"""Streaming speed: one chunk at a time over the KV cache against recomputing the context (Oasis-style).

A random-weight DiT of the bundled shapes DiT's config by default (64×64 frames as 16 × 16 latents,
1 latent frame a chunk, 4 steps), with a context window of 16 and of 32 frames. Both modes run
interleaved, chunk for chunk, so machine noise hits both alike. Prints ms a chunk, frames/s and the
ratio. `--rollout N` also streams N frames with a sink and a window and prints the peak RSS at 1k
frames and at the end, to show memory stays flat.

`--world DIR` times a trained world model as a player meets it, pixels out: the latency from a
real start frame to the first made frame, then frames/s over `--frames` key presses (each step
is the DiT over the KV cache plus the VAE's decode of the new frame).

    python benchmarks/stream.py
    python benchmarks/stream.py --rollout 10000
    python benchmarks/stream.py --world kinema/assets/breakout-world --config kinema/assets/breakout-world/dit/config.json
    python benchmarks/stream.py --text runs/stream_shapes/pipeline --config runs/stream_shapes/pipeline/dit/config.json

`--text DIR` times a streaming text pipeline (`kinema stream`) the same way, pixels out, at its
own steps and at `--steps`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch

from kinema.generate.pipeline import BUNDLED
from kinema.generate.stream import LatentStream, StreamSettings
from kinema.models.dit import DiTConfig, VideoDiT

TEXT_TOKENS = 12


def random_dit(config_path: Path) -> VideoDiT:
    """A DiT of the saved config with fresh random weights (speed does not depend on them)."""
    torch.manual_seed(0)
    return VideoDiT(DiTConfig.from_dict(json.loads(config_path.read_text()))).eval()


def new_stream(
    dit: VideoDiT, window: int, steps: int, recompute: bool, sinks: int = 0, made: int | None = None
) -> LatentStream:
    """A stream keeping `window` frames (plus `sinks`) that has already made `made` (default: window)."""
    text = torch.randn(1, TEXT_TOKENS, dit.config.text_dim)
    settings = StreamSettings(chunk_frames=1, steps=steps, sink_frames=sinks, window_frames=window)
    stream = LatentStream(dit, text, settings=settings, recompute=recompute)
    for _ in range(window if made is None else made):
        stream.next_chunk(chunk_noise(dit))
    return stream


def chunk_noise(dit: VideoDiT, size: int = 16) -> torch.Tensor:
    """Noise for one latent frame of the shapes world (16 × 16 latents)."""
    return torch.randn(1, dit.config.latent_channels, 1, size, size)


def seconds(stream: LatentStream, dit: VideoDiT) -> float:
    """Wall time of one chunk."""
    noise = chunk_noise(dit)
    start = time.perf_counter()
    stream.next_chunk(noise)
    return time.perf_counter() - start


def compare(dit: VideoDiT, window: int, steps: int, repeats: int) -> None:
    """Print ms a chunk for the cache and for recomputing, interleaved, and their ratio."""
    streams = {
        "cache": new_stream(dit, window, steps, False),
        "recompute": new_stream(dit, window, steps, True),
    }
    times: dict[str, list[float]] = {name: [] for name in streams}
    for _ in range(repeats):
        for name, stream in streams.items():
            times[name].append(seconds(stream, dit))
    cache, recompute = (statistics.median(times[k]) for k in ("cache", "recompute"))
    print(
        f"context {window:>2} frames: cache {cache * 1e3:7.1f} ms/frame ({1 / cache:5.1f} fps)   "
        f"recompute {recompute * 1e3:7.1f} ms/frame ({1 / recompute:5.1f} fps)   "
        f"recompute / cache {recompute / cache:.2f}"
    )


def first_chunk_latency(dit: VideoDiT, steps: int) -> float:
    """Seconds from an empty stream to its first chunk."""
    return seconds(new_stream(dit, window=16, steps=steps, recompute=False, sinks=1, made=0), dit)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rollout(dit: VideoDiT, frames: int, steps: int) -> None:
    """Stream `frames` frames with 1 sink and a 15-frame window; print the peak RSS along the way."""
    stream = new_stream(dit, window=15, steps=steps, recompute=False, sinks=1)
    start = time.perf_counter()
    while stream.frames_made < frames:
        out = stream.next_chunk(chunk_noise(dit))
        if not out.isfinite().all():
            raise SystemExit(f"non-finite latents at frame {stream.frames_made}")
        if stream.frames_made in (1000, frames):
            print(
                f"frame {stream.frames_made}: peak RSS {peak_rss_mb():.0f} MB, {len(stream.cache)} cached frames, "
                f"{stream.frames_made / (time.perf_counter() - start):.1f} fps so far"
            )


def play_speed(folder: Path, steps: int | None, frames: int) -> None:
    """A world model's first-frame latency and frames/s with random key presses, pixels out."""
    from kinema.generate.world import WorldModel, start_frames

    world = WorldModel.from_pretrained(folder, steps=steps)
    first = start_frames(folder)[0]
    keys = torch.Generator().manual_seed(0)
    press = lambda: int(torch.randint(world.num_actions, (1,), generator=keys))  # noqa: E731
    world.new_game(first).step(0)  # warm up
    start = time.perf_counter()
    game = world.new_game(first, seed=1)
    game.step(press())
    latency = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(frames):
        game.step(press())
    fps = frames / (time.perf_counter() - start)
    print(
        f"world model {folder} at {world.settings.steps} steps: first frame {latency * 1e3:.1f} ms "
        f"after the start frame, then {fps:.1f} fps over {frames} frames (pixels out, 1 frame a step)"
    )


def text_stream_speed(folder: Path, steps: int | None, frames: int) -> None:
    """A streaming text pipeline's first-frame latency and frames/s, pixels out, at its guidance."""
    from kinema.generate.pipeline import Pipeline

    pipeline = Pipeline.from_pretrained(folder)
    prompt = "a red circle moving right"
    next(iter(pipeline.stream(prompt, 1, steps=steps)))  # warm up
    start = time.perf_counter()
    pieces = iter(pipeline.stream(prompt, frames, steps=steps, seed=1))
    made = len(next(pieces))
    latency = time.perf_counter() - start
    for piece in pieces:
        made += len(piece)
    fps = (made - 1) / (time.perf_counter() - latency - start)
    used = steps or pipeline.info.steps
    print(
        f"text stream {folder} at {used} steps, guidance {pipeline.info.guidance}: first frame "
        f"{latency * 1e3:.1f} ms after the prompt is encoded, then {fps:.1f} fps over {frames} frames (pixels out)"
    )


def main() -> None:
    """Parse arguments and run the comparison (and the rollout when asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=BUNDLED / "dit" / "config.json")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rollout", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--world", type=Path, help="also time this world model folder as a player meets it")
    parser.add_argument("--text", type=Path, help="also time this streaming text pipeline folder")
    parser.add_argument("--frames", type=int, default=200, help="world model and text stream: frames to time")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.world:
        play_speed(args.world, args.steps, args.frames)
    if args.text:
        text_stream_speed(args.text, None, args.frames)
        text_stream_speed(args.text, args.steps, args.frames)
    dit = random_dit(args.config)
    params = sum(p.numel() for p in dit.parameters()) / 1e6
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; DiT {params:.1f}M, {args.steps} steps"
    )
    print(f"first chunk from an empty cache: {first_chunk_latency(dit, args.steps) * 1e3:.1f} ms")
    for window in (16, 32):
        compare(dit, window, args.steps, args.repeats)
    if args.rollout:
        rollout(dit, args.rollout, args.steps)


if __name__ == "__main__":
    main()
