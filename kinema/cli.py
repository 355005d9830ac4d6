"""The `kinema` command: parse arguments, call one library function, print the result."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from kinema import __version__
from kinema.errors import KinemaError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, `kinema: error: ...`, and exit 2."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("kinema").strip()
        where = f" (see 'kinema {command} --help')" if command else " (see 'kinema --help')"
        self.exit(2, f"kinema: error: {message}{where}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _even_size(text: str) -> tuple[int, int]:
    """'64' or '96x48' (width x height); both even, as H.264 needs."""
    try:
        width, height = (int(v) for v in (text.split("x") if "x" in text else (text, text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got '{text}'") from None
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(
            f"width and height must be even and >= 2 for H.264 mp4, got '{text}'"
        )
    return width, height


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


# argparse reports a type function's name on ValueError ("invalid _positive_int value"); make it read well.
_positive_int.__name__ = "positive integer"
_non_negative_int.__name__ = "integer >= 0"
_positive_float.__name__ = "positive number"
_non_negative_float.__name__ = "number >= 0"


def _synth_shapes(args: argparse.Namespace) -> None:
    from kinema.config import load_config, save_config
    from kinema.data.shapes import ShapesConfig, synthesize

    # Flags given on the command line win over key=value overrides; absent ones leave them be.
    flags = [f"{key}={value}" for key, value in _given(args, "frames", "fps", "split")]
    if args.size:
        flags += [f"width={args.size[0]}", f"height={args.size[1]}"]
    config = load_config(ShapesConfig, None, [*args.overrides, *flags])
    out = Path(args.out)
    started = time.perf_counter()
    manifest = synthesize(out, args.num, config, seed=args.seed, progress=not args.quiet)
    save_config(config, out / "config.yaml")
    print(f"wrote {args.num} clips to {out}/ in {time.perf_counter() - started:.1f} s (manifest: {manifest})")


def _record(args: argparse.Namespace) -> None:
    from kinema.data.games import RecordSettings, record

    width, height = args.size
    settings = RecordSettings(
        env_id=args.env,
        frames=args.frames,
        width=width,
        height=height,
        policy=args.policy,
        hold=args.hold,
        clip_frames=args.clip_frames,
        max_episode_frames=args.max_episode_frames,
        fps=args.fps,
        frame_skip=args.frame_skip,
        seed=args.seed,
    )
    started = time.perf_counter()
    manifest = record(args.out, settings, progress=not args.quiet)
    print(
        f"recorded {args.frames} frames of {args.env} in {time.perf_counter() - started:.1f} s (manifest: {manifest})"
    )


def _curate(args: argparse.Namespace) -> None:
    from kinema.config import load_config, save_config

    try:
        from kinema.data.curate import CurateRecipe, curate
    except ImportError as e:
        raise KinemaError(
            f"curation needs the curate extra ({e.name} is missing): pip install 'kinema[curate]'"
        ) from None

    # KEY=VALUE items are recipe overrides, unless a file of that name exists.
    overrides = [item for item in args.items if "=" in item and not Path(item).exists()]
    inputs = [item for item in args.items if item not in overrides]
    if not inputs:
        raise KinemaError("kinema data curate: give at least one input folder, glob, manifest or file")
    if args.workers is not None:
        overrides.append(f"workers={args.workers}")
    recipe = load_config(CurateRecipe, args.recipe, overrides)
    started = time.perf_counter()
    result = curate(inputs, args.out, recipe, progress=not args.quiet)
    save_config(recipe, Path(args.out) / "recipe.yaml")
    funnel = " -> ".join(f"{count} {label}" for label, count in result.funnel)
    print(f"curated in {time.perf_counter() - started:.1f} s: {funnel}")
    print(f"analysed {result.analysed} files ({result.from_cache} more from the cache)")
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(result.reasons.items())) or "none"
    print(f"rejected: {rejected}")
    print(f"manifest: {result.manifest}  audit: {result.audit}  report: {result.report}")


def _given(args: argparse.Namespace, *names: str) -> list[tuple[str, object]]:
    """The (name, value) pairs of the options the user actually gave."""
    return [(name, getattr(args, name)) for name in names if getattr(args, name) is not None]


def _probe(args: argparse.Namespace) -> int:
    from kinema.data.manifest import ClipRecord, relative_to_manifest, write_manifest
    from kinema.io.video import VideoError, probe

    failed, records = 0, []
    for path in args.files:
        try:
            info = probe(path)
        except VideoError as e:
            failed += 1
            if args.json:
                print(json.dumps({"path": path, "error": e.reason}))
            else:
                print(f"kinema: error: {e}", file=sys.stderr)
            continue
        if args.manifest:
            where = relative_to_manifest(path, args.manifest)
            records.append(ClipRecord(where, info.fps, info.num_frames, info.width, info.height))
        if args.json:
            print(json.dumps(info.to_dict()))
        else:
            print(
                f"{path}: {info.codec} {info.width}x{info.height} {info.fps:.3f} fps{' (VFR)' if info.vfr else ''}, "
                f"{info.num_frames} frames, {info.duration:.2f} s, rotation {info.rotation}, "
                f"{'audio' if info.has_audio else 'no audio'}"
            )
    if args.manifest:
        write_manifest(args.manifest, records)
        print(f"wrote {args.manifest}: {len(records)} clips", file=sys.stderr if args.json else sys.stdout)
    return 2 if failed else 0


def _preview(args: argparse.Namespace) -> None:
    import torch

    from kinema.config import Recipe, load_config, save_config
    from kinema.data.dataset import make_dataset, make_loader, to_frames
    from kinema.io.video import write_contact_sheet

    recipe = load_config(Recipe, args.recipe, args.overrides)
    dataset = make_dataset(recipe.data, seed=recipe.train.seed)
    loader = make_loader(
        dataset,
        batch_size=args.clips,
        num_workers=recipe.data.num_workers,
        seed=recipe.train.seed,
        drop_last=False,
    )
    batch = next(iter(loader))
    video = batch["video"]
    # One row per clip: its frames side by side.
    frames = to_frames(torch.cat(list(video), dim=1))
    out = Path(args.out)
    write_contact_sheet(out, frames, cols=recipe.data.frames)
    save_config(recipe, out.with_suffix(".yaml"))
    for i, caption in enumerate(batch["caption"]):
        print(f"{i}: {caption}")
    print(f"batch video {tuple(video.shape)} in [{video.min():.2f}, {video.max():.2f}]; wrote {out}")


def _eval(args: argparse.Namespace) -> None:
    from kinema.eval.evaluate import evaluate, format_table

    if not args.inputs and not args.manifest:
        raise KinemaError("give videos or folders to score, or --manifest")
    _existing(args.manifest, "manifest", Path.is_file)
    _existing(args.reference, "reference folder", Path.is_dir)
    _existing(args.i3d, "I3D weights file", Path.is_file)
    started = time.perf_counter()
    result = evaluate(args.inputs, args.manifest, args.reference, args.i3d, progress=not args.quiet)
    summary = result.summary
    print(format_table(summary))
    _print_eval_footer(summary)
    _write_outputs(args, summary, result.thumbnails)
    counts = summary["summary"]
    print(f"scored {counts['ok']} of {counts['count']} videos in {time.perf_counter() - started:.1f} s")


def _reconstruct(args: argparse.Namespace) -> None:
    import itertools

    from kinema.eval.reconstruction import file_clips, score_reconstructions, shapes_clips
    from kinema.io import atomic_write_text
    from kinema.models.vae import load_vae

    if not args.inputs and not args.shapes:
        raise KinemaError("give video files to reconstruct, or --shapes N")
    _existing(args.vae, "VAE folder", Path.is_dir)
    for path in args.inputs:
        _existing(path, "video", Path.is_file)
    width, height = args.size
    vae = load_vae(args.vae)
    held_out = shapes_clips(args.shapes or 0, width, height, args.frames)
    skipped: list[str] = []
    clips = itertools.chain(file_clips(args.inputs, args.frames, skipped), held_out)
    started = time.perf_counter()
    try:
        scores = score_reconstructions(
            vae, clips, width=width, height=height, max_frames=args.frames, progress=not args.quiet
        )
    finally:
        for reason in skipped:
            print(f"skipped {reason}", file=sys.stderr)
    for row in scores["clips"] if args.inputs else []:
        print(f"{row['name']}: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f} ({row['frames']} frames)")
    print(
        f"{scores['count']} clips at {width}x{height}: PSNR {scores['psnr']:.2f} dB over all pixels "
        f"(clip mean {scores['psnr_clip_mean']:.2f}), SSIM {scores['ssim']:.4f}, "
        f"{time.perf_counter() - started:.1f} s"
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(scores, indent=2) + "\n")
        print(f"wrote {args.json}")


def _existing(path: str | None, what: str, test: Callable[[Path], bool]) -> None:
    if path is not None and not test(Path(path)):
        raise KinemaError(f"{what} not found: {path}")


def _print_eval_footer(summary: dict) -> None:
    from kinema.eval.checkers import mistakes

    for row in summary["videos"]:
        if row["status"] != "ok":
            print(f"error: {row['path']}: {row['error']}", file=sys.stderr)
    if summary["checker"]:
        cells = [
            f"{k} {v['correct']}/{v['total']} ({v['accuracy']:.1%})" for k, v in summary["checker"].items()
        ]
        print("checker: " + ", ".join(cells))
        for attr in ("shape", "motion"):
            wrong = mistakes(summary["confusion"], attr)[:4]
            if wrong:
                print(
                    f"  {attr} most often seen wrong: " + ", ".join(f"{w} as {s} {n}x" for w, s, n in wrong)
                )
    if summary["horizon"]:
        psnr = summary["horizon"]["psnr"]
        print(f"PSNR vs reference: {psnr[0]:.2f} dB at frame 0, {psnr[-1]:.2f} dB at frame {len(psnr) - 1}")
    frechet = summary["frechet"]
    if frechet:
        if "stats_distance" in frechet:
            print(f"Fréchet distance (stats features, not FVD): {frechet['stats_distance']:.4g}")
        print(
            f"FVD: {frechet['value']:.2f}"
            if frechet["available"]
            else f"FVD: unavailable: {frechet['reason']}"
        )


def _write_outputs(args: argparse.Namespace, summary: dict, thumbnails: dict) -> None:
    from kinema.eval.report import write_report
    from kinema.io import atomic_write_text

    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.report:
        write_report(args.report, summary, thumbnails)
        print(f"wrote {args.report}")


def _read_prompts(path: str) -> list[str]:
    """Prompts from a text file (one per line) or a manifest.jsonl (its captions)."""
    from kinema.data.manifest import read_manifest

    _existing(path, "prompts file", Path.is_file)
    if path.endswith(".jsonl"):
        return [record.caption for record in read_manifest(path) if record.caption]
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _sweep(args: argparse.Namespace) -> None:
    from kinema.eval.report import write_report, write_sweep_report
    from kinema.eval.sweep import format_sweep, load_generator, parse_sweep, run_sweep
    from kinema.io import atomic_write_text

    try:
        param, values = parse_sweep(args.sweep)
        generate = load_generator(args.generator)
    except ValueError as e:
        raise KinemaError(str(e)) from None
    prompts = list(args.prompt or [])
    for path in args.prompts or []:
        prompts += _read_prompts(path)
    if not prompts:
        raise KinemaError("give at least one --prompt or a --prompts file")
    out = Path(args.out)
    table, evaluations = run_sweep(
        generate,
        param,
        values,
        prompts,
        args.seeds,
        out,
        progress=not args.quiet,
        seed_per_prompt=args.seed_per_prompt,
    )
    print(format_sweep(table))
    atomic_write_text(out / "sweep.json", json.dumps(table, indent=1) + "\n")
    for name, evaluation in evaluations.items():
        write_report(
            out / name / "report.html",
            evaluation.summary,
            evaluation.thumbnails,
            title=f"Kinema sweep: {name}",
        )
    write_sweep_report(out / "report.html", table)
    print(f"wrote {out / 'sweep.json'} and {out / 'report.html'}")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds repeat: '{text}'")
    return seeds


def _train(args: argparse.Namespace) -> None:
    from kinema.config import load_config, save_config
    from kinema.train import recipes, world

    schema, run = {
        "vae": (recipes.VAERecipe, recipes.train_vae),
        "t2v": (recipes.T2VRecipe, recipes.train_t2v),
        "world": (world.WorldRecipe, world.train_world),
    }[args.kind]
    recipe = load_config(schema, args.recipe, args.overrides)
    out = Path(recipe.train.out_dir)
    save_config(recipe, out / "config.yaml")
    started = time.perf_counter()
    result = run(recipe, resume=args.resume, progress=not args.quiet)
    minutes = (time.perf_counter() - started) / 60
    print(
        f"trained {args.kind} to step {result.step} in {minutes:.1f} min (loss {result.last_loss:.4f}); wrote {out / 'final'}"
    )


def _play(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from kinema.serve.app import make_app
    except ImportError:
        raise KinemaError("kinema play needs the web extra: pip install 'kinema[web]'") from None
    from kinema.generate.world import BUNDLED_WORLD, WorldModel, start_frames

    model = Path(args.model) if args.model else BUNDLED_WORLD
    if not model.is_dir():
        raise KinemaError(f"model folder not found: {model}")
    world = WorldModel.from_pretrained(model, device=_torch_device(args.device), steps=args.steps)
    app = make_app(world, start_frames(model), fps=args.fps, max_players=args.max_players)
    print(f"kinema play: open http://{args.host}:{args.port}/ to play {model} (Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _rollout(args: argparse.Namespace) -> None:
    from kinema.generate.world import WorldModel, write_rollouts

    world = WorldModel.from_pretrained(args.model, device=_torch_device(args.device), steps=args.steps)
    started = time.perf_counter()
    made, truth = write_rollouts(
        world,
        args.manifest,
        args.out,
        frames=args.frames,
        teacher_forced=args.teacher_forced,
        clips=args.clips,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(
        f"wrote rollouts to {made}/ and the true frames to {truth}/ in {time.perf_counter() - started:.1f} s"
    )
    print(
        f"score them with: kinema eval {made} --reference {truth} --report {Path(args.out) / 'report.html'}"
    )


def _torch_device(name: str) -> str:
    """'auto' as 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without one is refused."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise KinemaError("--device cuda: no CUDA GPU is visible to torch")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _generate(args: argparse.Namespace) -> None:
    from kinema.generate.pipeline import BUNDLED, Pipeline
    from kinema.io import atomic_write_text, write_contact_sheet, write_video

    model = Path(args.model) if args.model else BUNDLED
    if not model.is_dir():
        raise KinemaError(f"model folder not found: {model}" + ("" if args.model else " (pass --model DIR)"))
    image = _read_image(args.image) if args.image else None
    device = _torch_device(args.device)
    started = time.perf_counter()
    pipeline = Pipeline.from_pretrained(model, device=device)
    frames = pipeline.generate(
        args.prompt,
        negative=args.negative,
        frames=args.frames,
        steps=args.steps,
        guidance=args.cfg,
        seed=args.seed,
        image=image,
        first_frame_steps=args.first_frame_steps,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - started
    write_video(args.output, frames, pipeline.info.fps)
    written = [args.output]
    if args.grid:
        write_contact_sheet(args.grid, frames, cols=min(len(frames), 9))
        written.append(args.grid)
    if args.json:
        record = {"prompt": args.prompt, "negative": args.negative, "seed": args.seed, "frames": len(frames)}
        record |= {
            "steps": args.steps or pipeline.info.steps,
            "guidance": pipeline.info.guidance if args.cfg is None else args.cfg,
        }
        if image is None:
            given = args.first_frame_steps
            record["first_frame_steps"] = pipeline.info.first_frame_steps if given is None else given
        record |= {"model": str(model), "device": device, "seconds": seconds}
        json_path = Path(args.output).with_suffix(".json")
        atomic_write_text(json_path, json.dumps(record, indent=1) + "\n")
        written.append(str(json_path))
    print(f"generated {len(frames)} frames in {seconds:.1f} s; wrote {', '.join(map(str, written))}")


def _stream(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from kinema.generate.pipeline import BUNDLED_STREAM, Pipeline
    from kinema.io.video import video_writer

    model = Path(args.model) if args.model else BUNDLED_STREAM
    if not model.is_dir():
        hint = (
            ""
            if args.model
            else " (no streaming model is bundled: pass --model DIR; docs/training.md says how to train one)"
        )
        raise KinemaError(f"model folder not found: {model}{hint}")
    image = _read_image(args.image) if args.image else None
    device = _torch_device(args.device)
    started = time.perf_counter()
    pipeline = Pipeline.from_pretrained(model, device=device)
    info = pipeline.info
    pieces = pipeline.stream(
        args.prompt,
        args.frames,
        negative=args.negative,
        steps=args.steps,
        guidance=args.cfg,
        seed=args.seed,
        window_frames=args.window,
        image=image,
    )
    first_frame_s = None
    with (
        video_writer(args.output, info.width, info.height, info.fps) as write,
        tqdm(total=args.frames, desc="stream", unit="frame", disable=args.quiet) as bar,
    ):
        for piece in pieces:
            first_frame_s = first_frame_s or time.perf_counter() - started
            write(piece)
            bar.update(len(piece))
    seconds = time.perf_counter() - started
    print(
        f"streamed {args.frames} frames in {seconds:.1f} s ({args.frames / seconds:.1f} frames/s, "
        f"first frame after {first_frame_s:.2f} s, model loading included); wrote {args.output}"
    )


def _read_image(path: str):
    """An image file as uint8 (H, W, 3) RGB, or a KinemaError naming the file and the reason."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise KinemaError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise KinemaError(f"can't read image {path}: {e}") from None


def _show_config(args: argparse.Namespace) -> None:
    from kinema.config import load_config, to_yaml
    from kinema.train.recipes import recipe_schema

    print(to_yaml(load_config(recipe_schema(args.recipe), args.recipe, args.overrides)), end="")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")

    parser = _Parser(prog="kinema", description="Kinema: raw video to generated video.", parents=[common])
    parser.add_argument("--version", action="version", version=f"kinema {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True, parser_class=_Parser)

    data = commands.add_parser("data", help="make, inspect and preview datasets")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND", required=True)

    synth = data_commands.add_parser("synth", help="synthesize a captioned dataset")
    worlds = synth.add_subparsers(title="worlds", metavar="WORLD", required=True)
    shapes = worlds.add_parser(
        "shapes",
        parents=[common],
        help="colored shapes with known motion, plus per-frame ground truth",
        description="Write N shapes-world clips (mp4), their ground truth and manifest.jsonl to --out.",
    )
    shapes.add_argument("--num", type=_positive_int, required=True, help="number of clips")
    shapes.add_argument("--out", required=True, help="output folder")
    shapes.add_argument("--size", type=_even_size, help="N or WxH, even (default 64)")
    shapes.add_argument("--frames", type=_positive_int, help="frames per clip (default 17)")
    shapes.add_argument("--fps", type=_positive_float, help="frames per second (default 8)")
    shapes.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    shapes.add_argument(
        "--split", choices=["train", "test", "all"], help="held-out combos: excluded, only, or ignored"
    )
    shapes.add_argument("--quiet", action="store_true", help="no progress bar")
    shapes.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="world options, e.g. max_objects=1 split=test"
    )
    shapes.set_defaults(run=_synth_shapes)

    rec = data_commands.add_parser(
        "record",
        parents=[common],
        help="play a game with a random policy and record frames plus actions (needs the games extra)",
        description="Record a Gymnasium game (ALE, ViZDoom) as clips with per-frame actions and a manifest.",
    )
    rec.add_argument("--env", required=True, metavar="ENV_ID", help="e.g. ALE/Breakout-v5, VizdoomBasic-v1")
    rec.add_argument("--frames", type=_positive_int, required=True, help="frames to record in all")
    rec.add_argument("--out", required=True, help="output folder (rerun to resume)")
    rec.add_argument("--size", type=_even_size, default=(64, 64), help="N or WxH, even (default 64)")
    rec.add_argument(
        "--policy",
        choices=["random", "sticky", "explore"],
        default="sticky",
        help="random; sticky (default); explore: sticky, but seeks screens not seen yet in the episode",
    )
    rec.add_argument(
        "--hold",
        type=_positive_float,
        default=4.0,
        help="sticky and explore: mean steps an action is held (default 4)",
    )
    rec.add_argument("--clip-frames", type=_positive_int, default=256, help="frames per clip (default 256)")
    rec.add_argument(
        "--max-episode-frames", type=_positive_int, default=1000, help="cap on an episode (default 1000)"
    )
    rec.add_argument("--fps", type=_positive_float, default=15.0, help="fps of the clips (default 15)")
    rec.add_argument("--frame-skip", type=_positive_int, help="env frames per step (the env's default)")
    rec.add_argument("--seed", type=int, default=0, help="seed of episodes and policy (default 0)")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(run=_record)

    cur = data_commands.add_parser(
        "curate",
        parents=[common],
        help="turn folders of real videos into clean, captioned clips and a training manifest",
        description="Probe, cut into scenes, gate on quality, drop duplicates, re-encode and caption; "
        "writes OUT/clips, manifest.jsonl, audit.jsonl (every decision and why) and report.html. "
        "Rerun to resume: analysed files are skipped by content hash.",
    )
    cur.add_argument(
        "items",
        nargs="+",
        metavar="INPUT|KEY=VALUE",
        help="folders, globs, manifests or files; recipe overrides",
    )
    cur.add_argument("--out", required=True, help="output folder")
    cur.add_argument("--recipe", default="curate", help="recipe YAML or bundled name (default curate)")
    cur.add_argument("--workers", type=_positive_int, help="processes (default: the recipe's, 2)")
    cur.add_argument("--quiet", action="store_true", help="no progress bars")
    cur.set_defaults(run=_curate)

    probe = data_commands.add_parser("probe", parents=[common], help="print what is in video files")
    probe.add_argument("files", nargs="+", metavar="FILE")
    probe.add_argument("--json", action="store_true", help="one JSON object per line")
    probe.add_argument(
        "--manifest", metavar="OUT.jsonl", help="also list the readable files as a training manifest"
    )
    probe.set_defaults(run=_probe)

    preview = data_commands.add_parser(
        "preview", parents=[common], help="load a batch as training sees it and save it as a PNG grid"
    )
    preview.add_argument("recipe", help="recipe YAML, or a bundled recipe's name")
    preview.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.frames=9")
    preview.add_argument("--clips", type=_positive_int, default=4, help="clips to show (default 4)")
    preview.add_argument("--out", default="preview.png", help="PNG to write (default preview.png)")
    preview.set_defaults(run=_preview)

    config = commands.add_parser("config", help="inspect recipes")
    config_commands = config.add_subparsers(title="config commands", metavar="COMMAND", required=True)
    show = config_commands.add_parser("show", parents=[common], help="print a recipe with overrides resolved")
    show.add_argument("recipe", help="recipe YAML, or a bundled recipe's name")
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.lr=3e-4 data.frames=17")
    show.set_defaults(run=_show_config)

    training = commands.add_parser("train", help="train a model from a recipe")
    kinds = training.add_subparsers(title="what to train", metavar="KIND", required=True)
    kinds_help = (
        ("vae", "the causal video VAE"),
        ("t2v", "the text-to-video DiT on cached latents"),
        ("world", "an action-conditioned, block-causal world model on a game recording"),
    )
    for kind, what in kinds_help:
        sub = kinds.add_parser(kind, parents=[common], help=f"train {what}")
        sub.add_argument("recipe", help="recipe YAML, or a bundled recipe's name")
        sub.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. train.steps=2000")
        sub.add_argument(
            "--resume", action="store_true", help="continue from the newest checkpoint in out_dir"
        )
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.set_defaults(run=_train, kind=kind)

    generate = commands.add_parser(
        "generate",
        parents=[common],
        help="generate a video from a prompt with the bundled (or a given) model",
    )
    generate.add_argument("prompt", help='e.g. "a red circle moving right"')
    generate.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="video to write")
    generate.add_argument("--negative", default="", metavar="TEXT", help="negative prompt for guidance")
    generate.add_argument("--image", metavar="FIRST_FRAME", help="first frame to start from (image-to-video)")
    generate.add_argument(
        "--frames", type=_positive_int, help="frames, 1 + 4k for 4x time (default: the model's)"
    )
    generate.add_argument("--steps", type=_positive_int, help="sampling steps (default: the model's)")
    generate.add_argument("--cfg", type=_non_negative_float, help="guidance scale; 1 turns guidance off")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    generate.add_argument(
        "--first-frame-steps",
        type=_non_negative_int,
        metavar="S",
        help="without --image, first draw a clip in S steps and make the video from its first frame; "
        "0 turns it off (default: the model's)",
    )
    generate.add_argument(
        "--model", metavar="DIR", help="pipeline folder (default: the bundled shapes model)"
    )
    generate.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where to run (default auto: a CUDA GPU when one is visible, else the CPU)",
    )
    generate.add_argument("--grid", metavar="PNG", help="also write the frames as a contact sheet")
    generate.add_argument(
        "--json", action="store_true", help="also write OUT.json with the settings and timing"
    )
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.set_defaults(run=_generate)

    stream = commands.add_parser(
        "stream",
        parents=[common],
        help="stream a video of any length from a prompt, chunk by chunk (a block-causal model)",
        description="Make a video chunk by chunk with a block-causal DiT over a KV cache and a "
        "rolling window, so any length runs in constant memory.",
    )
    stream.add_argument("prompt", help='e.g. "a red circle moving right"')
    stream.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="video to write")
    stream.add_argument("--frames", type=_positive_int, required=True, help="frames to make, any number")
    stream.add_argument("--negative", default="", metavar="TEXT", help="negative prompt for guidance")
    stream.add_argument("--steps", type=_positive_int, help="sampling steps a chunk (default: the model's)")
    stream.add_argument("--cfg", type=_non_negative_float, help="guidance scale; 1 turns guidance off")
    stream.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    stream.add_argument(
        "--window",
        type=_positive_int,
        metavar="LATENT_FRAMES",
        help="past latent frames each chunk sees (default: the training clip's, less one chunk)",
    )
    stream.add_argument("--image", metavar="FIRST_FRAME", help="first frame to go on from")
    stream.add_argument("--model", metavar="DIR", help="a block-causal pipeline folder")
    stream.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to run (default auto)"
    )
    stream.add_argument("--quiet", action="store_true", help="no progress bar")
    stream.set_defaults(run=_stream)

    rollout = commands.add_parser(
        "rollout",
        parents=[common],
        help="replay a recording's actions through a world model, for kinema eval against the true frames",
        description="From each clip's real first frame, play its recorded actions through a world model; "
        "write the made videos and the true ones under --out by the same names.",
    )
    rollout.add_argument("--model", required=True, metavar="DIR", help="world model folder")
    rollout.add_argument("--manifest", required=True, help="a recording's manifest.jsonl (held-out episodes)")
    rollout.add_argument("--out", required=True, help="output folder (made/ and truth/)")
    rollout.add_argument("--frames", type=_positive_int, default=64, help="frames a rollout (default 64)")
    rollout.add_argument(
        "--teacher-forced", action="store_true", help="predict every frame from the real frames before it"
    )
    rollout.add_argument("--clips", type=_positive_int, help="at most this many clips (default all)")
    rollout.add_argument("--steps", type=_positive_int, help="denoising steps a frame (default: the model's)")
    rollout.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    rollout.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default auto")
    rollout.add_argument("--quiet", action="store_true", help="no progress bar")
    rollout.set_defaults(run=_rollout)

    play = commands.add_parser(
        "play",
        parents=[common],
        help="play a world model in the browser with the keyboard (needs the web extra)",
        description="Serve a world model and a page where you play it: keys in, frames out, over a WebSocket.",
    )
    play.add_argument(
        "--model",
        metavar="DIR",
        help="world model folder (default: the bundled Breakout model)",
    )
    play.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)"
    )
    play.add_argument("--port", type=_positive_int, default=8000, help="port (default 8000)")
    play.add_argument("--steps", type=_positive_int, help="denoising steps a frame (default: the model's)")
    play.add_argument("--fps", type=_positive_float, help="frames a second to aim for (default: the model's)")
    play.add_argument(
        "--max-players", type=_positive_int, default=16, help="connections at once (default 16)"
    )
    play.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="default auto")
    play.set_defaults(run=_play)

    scoring = commands.add_parser(
        "eval",
        parents=[common],
        help="score videos: metrics, checks against prompts or ground truth, references, report",
        description="Score video files. Unreadable files become error rows; the run still exits 0.",
    )
    scoring.add_argument(
        "inputs", nargs="*", metavar="VIDEO_OR_DIR", help="files, or folders searched recursively"
    )
    scoring.add_argument(
        "--manifest", help="manifest.jsonl: captions and ground truth (and the videos, if none given)"
    )
    scoring.add_argument(
        "--reference", metavar="DIR", help="true videos, matched by file name: PSNR/SSIM per frame"
    )
    scoring.add_argument("--i3d", metavar="PATH", help="TorchScript I3D weights (i3d_torchscript.pt) for FVD")
    scoring.add_argument("--json", metavar="OUT", help="write the full results as JSON")
    scoring.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report")
    scoring.add_argument("--quiet", action="store_true", help="no progress bar")
    scoring.set_defaults(run=_eval)

    recon = commands.add_parser(
        "reconstruct",
        parents=[common],
        help="score a VAE's round trip (encode, decode) on videos or held-out shapes clips: PSNR, SSIM",
    )
    recon.add_argument(
        "inputs", nargs="*", metavar="VIDEO", help="video files (resized and cropped to --size)"
    )
    recon.add_argument("--vae", required=True, metavar="DIR", help="a saved VAE folder")
    recon.add_argument("--shapes", type=_positive_int, metavar="N", help="also N held-out shapes-world clips")
    recon.add_argument("--size", type=_even_size, default=(64, 64), help="WxH clips are cut to (default 64)")
    recon.add_argument(
        "--frames", type=_positive_int, default=17, help="frames per clip, at most (default 17)"
    )
    recon.add_argument("--json", metavar="OUT", help="write per-clip scores as JSON")
    recon.add_argument("--quiet", action="store_true", help="no progress bar")
    recon.set_defaults(run=_reconstruct)

    sweep = commands.add_parser(
        "sweep",
        parents=[common],
        help="vary one generation parameter over fixed prompts and seeds; compare time and metrics",
    )
    sweep.add_argument("sweep", metavar="PARAM=V1,V2,...", help="e.g. steps=10,20,50 or cfg=1,3,6")
    sweep.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    sweep.add_argument(
        "--prompts",
        metavar="FILE",
        action="append",
        help="a text file with one prompt per line, or a "
        "manifest.jsonl whose captions are the prompts (repeatable)",
    )
    sweep.add_argument("--seeds", type=_seeds, default=[0], help="comma-separated seeds (default 0)")
    sweep.add_argument(
        "--seed-per-prompt",
        action="store_true",
        help="give each prompt its own seeds (seed s of prompt p becomes s + p x the seeds' span), "
        "so prompts do not share starting noise",
    )
    sweep.add_argument(
        "--generator",
        default="kinema.generate.pipeline:sweep_generator",
        metavar="MODULE:FUNCTION",
        help="generate(prompt, seed, **{PARAM: value}) -> (frames, fps); also FILE.py:FUNCTION "
        "(default: the bundled pipeline, whose settings are steps, cfg, frames and negative)",
    )
    sweep.add_argument("--out", required=True, help="output folder (reruns resume)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(run=_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `kinema` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    try:
        return args.run(args) or 0
    except KinemaError as e:
        _fail(e, verbose, f"kinema: error: {e}")
        return 2
    except KeyboardInterrupt:
        print("kinema: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        hint = "" if verbose else " (run with --verbose for the traceback)"
        _fail(e, verbose, f"kinema: error: {type(e).__name__}: {e}{hint}")
        return 1


def _fail(error: BaseException, verbose: bool, line: str) -> None:
    """Print the one-line reason, after the traceback when verbose."""
    if verbose:
        traceback.print_exception(error)
    print(line.splitlines()[0], file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
