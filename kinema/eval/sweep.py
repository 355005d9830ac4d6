"""The book's chapter-1 experiment: vary one generation parameter, keep prompts and seeds, compare.

A generator is any callable `generate(prompt, seed, **{param: value}) -> (frames, fps)` with
frames uint8 (T, H, W, 3). Every video is written with a sidecar JSON (prompt, seed, value,
seconds), so an interrupted sweep resumes where it stopped and never regenerates a finished video.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kinema.eval.evaluate import Evaluation, evaluate, format_number
from kinema.io import atomic_write_text, write_video

Generator = Callable[..., tuple[np.ndarray, float]]


def parse_sweep(spec: str) -> tuple[str, list[Any]]:
    """'steps=10,20,50' -> ('steps', [10, 20, 50]); values are read as Python literals when they parse."""
    name, sep, values = spec.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not values.strip():
        raise ValueError(f"sweep must look like NAME=V1,V2,..., got '{spec}'")
    parsed = [_literal(v.strip()) for v in values.split(",")]
    if any(v == "" for v in parsed):
        raise ValueError(f"sweep '{spec}' has an empty value")
    if len(set(map(repr, parsed))) != len(parsed):
        raise ValueError(f"sweep '{spec}' repeats a value")
    return name, parsed


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_generator(spec: str) -> Generator:
    """The callable named by 'package.module:function' or 'path/to/file.py:function'."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"generator must look like MODULE:FUNCTION or FILE.py:FUNCTION, got '{spec}'")
    if module_name.endswith(".py"):
        module_spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        if module_spec is None or not Path(module_name).is_file():
            raise ValueError(f"generator file not found: {module_name}")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{module_name} has no function '{attribute}'")
    return function


def run_sweep(
    generate: Generator,
    param: str,
    values: Sequence[Any],
    prompts: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    progress: bool = True,
    seed_per_prompt: bool = False,
) -> tuple[dict[str, Any], dict[str, Evaluation]]:
    """Generate every prompt × seed at every value; return the table and each value's evaluation.

    With `seed_per_prompt`, no two prompts share a seed (see `prompt_seed`): one seed for every prompt
    gives every prompt the same starting noise, so their mistakes are correlated.
    """
    if not prompts or not seeds:
        raise ValueError("a sweep needs at least one prompt and one seed")
    if param in ("prompt", "seed"):
        raise ValueError(f"sweep parameter '{param}' is fixed by the sweep itself; vary a generation setting")
    out = Path(out_dir)
    videos = {value: [] for value in values}
    jobs = [
        (value, p, prompt_seed(seed, p, seeds) if seed_per_prompt else seed)
        for value in values
        for p in range(len(prompts))
        for seed in seeds
    ]
    for value, p, seed in tqdm(jobs, desc=f"sweep {param}", unit="video", disable=not progress):
        folder = out / folder_name(param, value)
        videos[value].append(_generate_once(generate, folder, param, value, prompts[p], p, seed))
    rows, evaluations = [], {}
    for value in values:
        evaluation = evaluate(videos[value], progress=False)
        evaluations[folder_name(param, value)] = evaluation
        rows.append(_sweep_row(param, value, videos[value], evaluation))
    table = {
        "param": param,
        "values": list(values),
        "prompts": list(prompts),
        "seeds": list(seeds),
        "seed_per_prompt": seed_per_prompt,
        "rows": rows,
    }
    return table, evaluations


def prompt_seed(seed: int, prompt_index: int, seeds: Sequence[int]) -> int:
    """Seed `seed` of the prompt at `prompt_index` when each prompt gets its own: distinct for every pair."""
    return seed + prompt_index * (max(seeds) - min(seeds) + 1)


def folder_name(param: str, value: Any) -> str:
    """The folder that holds one value's videos, e.g. 'steps=20'."""
    return f"{param}={value}".replace("/", "_")


def _generate_once(
    generate: Generator, folder: Path, param: str, value: Any, prompt: str, p: int, seed: int
) -> Path:
    """Generate and write one video unless an earlier run already finished it; return its path."""
    video, sidecar = folder / f"prompt{p:03d}_seed{seed}.mp4", folder / f"prompt{p:03d}_seed{seed}.json"
    if video.is_file() and sidecar.is_file():
        return video
    started = time.perf_counter()
    frames, fps = generate(prompt=prompt, seed=seed, **{param: value})
    seconds = time.perf_counter() - started
    write_video(video, np.asarray(frames), fps)
    record = {"prompt": prompt, "seed": seed, "param": param, "value": value, "seconds": seconds}
    atomic_write_text(sidecar, json.dumps(record) + "\n")
    return video


def _sweep_row(param: str, value: Any, videos: list[Path], evaluation: Evaluation) -> dict[str, Any]:
    """Seconds per video, mean metrics and checker accuracy for one value."""
    seconds = [json.loads(v.with_suffix(".json").read_text(encoding="utf-8"))["seconds"] for v in videos]
    summary = evaluation.summary
    metrics = {name: stats["mean"] for name, stats in summary["summary"]["metrics"].items()}
    checker = summary["checker"] or {}
    accuracy = {name: entry["accuracy"] for name, entry in checker.items()}
    return {
        param: value,
        "seconds_per_video": float(np.mean(seconds)),
        "videos": summary["summary"]["ok"],
        "errors": summary["summary"]["errors"],
        "metrics": metrics,
        "checker": accuracy,
    }


def format_sweep(result: dict[str, Any]) -> str:
    """The time-against-metrics table for the console."""
    param = result["param"]
    metric_names = ["temporal_consistency", "sharpness_mean", "motion", "temporal_flickering", "mean_flow"]
    check_names = sorted({name for row in result["rows"] for name in row["checker"]})
    header = [param, "s/video", *metric_names, *(f"acc_{n}" for n in check_names)]
    lines = [header]
    for row in result["rows"]:
        cells = [str(row[param]), f"{row['seconds_per_video']:.2f}"]
        cells += [format_number(row["metrics"].get(n)) for n in metric_names]
        cells += [format_number(row["checker"].get(n)) for n in check_names]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines)
