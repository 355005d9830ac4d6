"""Score a set of video files: metrics, checks against prompts or ground truth, references, Fréchet.

`evaluate` returns a JSON-ready summary (what `kinema eval --json` writes and the HTML report
draws) plus first/middle/last thumbnails. A file that can't be read or scored becomes an error
row; it never stops the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kinema import __version__
from kinema.data.manifest import clip_path, read_manifest
from kinema.errors import KinemaError
from kinema.eval import checkers
from kinema.eval.frechet import FeatureExtractor, I3DFeatures, StatsFeatures, set_distance
from kinema.eval.metrics import psnr_per_frame, ssim_per_frame, video_metrics
from kinema.io import read_video

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".gif"}
FVD_UNAVAILABLE = "FVD needs the standard I3D weights (i3d_torchscript.pt): pass --i3d PATH"


@dataclass
class Target:
    """One video to score, with what it should show when that is known."""

    path: Path
    caption: str | None = None
    expected: list[dict[str, Any]] | None = None
    source: str | None = None  # where `expected` came from: "ground_truth" or "caption"


@dataclass
class Evaluation:
    """The JSON-ready summary of a run, and thumbnails (first, middle, last frame) per video path."""

    summary: dict[str, Any]
    thumbnails: dict[str, list[np.ndarray]] = field(default_factory=dict)


def collect_targets(inputs: Sequence[str | Path], manifest: str | Path | None = None) -> list[Target]:
    """Videos named on the command line (folders searched recursively) and those in a manifest.

    Captions and expected objects come from the manifest when it lists the file (by path, else
    by file name, so generated copies of a test set match), else from a sidecar `VIDEO.txt`
    (the prompt) or `VIDEO.json` (its "prompt" or "caption").
    """
    known = _manifest_targets(manifest) if manifest else {}
    by_name = {path.name: target for path, target in known.items()}
    paths = (
        [path for item in inputs for path in _expand(Path(item))]
        if inputs
        else [t.path for t in known.values()]
    )
    targets = [known.get(path.resolve()) or by_name.get(path.name) or _sidecar_target(path) for path in paths]
    return [Target(path, t.caption, t.expected, t.source) for path, t in zip(paths, targets, strict=True)]


def _expand(item: Path) -> list[Path]:
    if item.is_dir():
        return sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    return [item]  # a named file is scored whatever its suffix, so a bad one shows up as an error row


def _manifest_targets(manifest: str | Path) -> dict[Path, Target]:
    targets = {}
    for record in read_manifest(manifest):
        path = clip_path(record, manifest)
        objects = record.meta.get("objects")
        if objects:
            targets[path.resolve()] = Target(
                path, record.caption, checkers.expected_from_truth(record.meta), "ground_truth"
            )
        else:
            targets[path.resolve()] = _caption_target(path, record.caption)
    return targets


def _sidecar_target(path: Path) -> Target:
    text, meta = path.with_suffix(".txt"), path.with_suffix(".json")
    caption = None
    if text.is_file():
        caption = text.read_text(encoding="utf-8").strip()
    elif meta.is_file():
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
            caption = data.get("prompt") or data.get("caption") if isinstance(data, dict) else None
        except (OSError, json.JSONDecodeError):
            caption = None
    return _caption_target(path, caption)


def _caption_target(path: Path, caption: str | None) -> Target:
    """A target whose expected objects are parsed from its caption, when it names any shapes."""
    expected = checkers.expected_from_caption(caption) if caption else []
    has_shapes = any(obj.get("shape") for obj in expected)
    return Target(path, caption or None, expected if has_shapes else None, "caption" if has_shapes else None)


def reference_index(folder: str | Path) -> dict[str, Path]:
    """The videos under a reference folder, by file name."""
    return {path.name: path for path in _expand(Path(folder))}


def evaluate_video(target: Target, reference: Path | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """One video's row (status "ok" or "error") and its frames (None on error)."""
    row: dict[str, Any] = {"path": str(target.path), "caption": target.caption}
    try:
        frames, fps = read_video(target.path)
        row.update(status="ok", fps=fps, frames=len(frames), width=frames.shape[2], height=frames.shape[1])
        row.update(video_metrics(frames, fps))
        row["reference"] = _compare(frames, reference) if reference else None
        row["check"] = None
        if target.expected is not None:
            row["check"] = checkers.check_video(frames, target.expected) | {"source": target.source}
        return row, frames
    except Exception as e:  # one bad file must not stop the batch; its reason goes in the row
        reason = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
        return {"path": str(target.path), "caption": target.caption, "status": "error", "error": reason}, None


def _compare(frames: np.ndarray, reference: Path) -> dict[str, Any]:
    """Per-frame PSNR and SSIM against the reference over the frames both have, or why not."""
    try:
        truth, _ = read_video(reference)
    except Exception as e:
        return {"path": str(reference), "error": getattr(e, "reason", None) or f"{type(e).__name__}: {e}"}
    if truth.shape[1:] != frames.shape[1:]:
        size = f"{truth.shape[2]}x{truth.shape[1]}, the video is {frames.shape[2]}x{frames.shape[1]}"
        return {"path": str(reference), "error": f"reference is {size}"}
    length = min(len(truth), len(frames))
    psnr = psnr_per_frame(frames[:length], truth[:length])
    ssim = ssim_per_frame(frames[:length], truth[:length])
    return {
        "path": str(reference),
        "frames_compared": length,
        "psnr": psnr,
        "ssim": ssim,
        "psnr_mean": float(np.mean(psnr)),
        "ssim_mean": float(np.mean(ssim)),
    }


def thumbnails(frames: np.ndarray) -> list[np.ndarray]:
    """The first, middle and last frames."""
    return [frames[0], frames[len(frames) // 2], frames[-1]]


def evaluate(
    inputs: Sequence[str | Path],
    manifest: str | Path | None = None,
    reference: str | Path | None = None,
    i3d: str | Path | None = None,
    progress: bool = True,
) -> Evaluation:
    """Score every input video; see the module docstring for what the summary holds."""
    targets = collect_targets(inputs, manifest)
    if not targets:
        raise KinemaError(f"no videos found in {', '.join(map(str, inputs)) or manifest}")
    references = reference_index(reference) if reference else {}
    extractors: list[FeatureExtractor] = [StatsFeatures()] + ([I3DFeatures(i3d)] if i3d else [])
    rows, thumbs, features = [], {}, {e.name: [] for e in extractors}
    for target in tqdm(targets, desc="eval", unit="video", disable=not progress):
        match = references.get(target.path.name)
        row, frames = evaluate_video(target, match)
        if reference and frames is not None and match is None:
            row["reference"] = {"error": f"no video named {target.path.name} under {reference}"}
        rows.append(row)
        if frames is not None:
            thumbs[row["path"]] = thumbnails(frames)
            _extract(extractors, frames, features)
    checks = [row["check"] for row in rows if row.get("check")]
    summary = {
        "kinema_version": __version__,
        "created": datetime.now().isoformat(timespec="seconds"),
        "inputs": [str(i) for i in inputs] + ([f"manifest: {manifest}"] if manifest else []),
        "videos": rows,
        "summary": summarize(rows),
        "checker": checkers.accuracy(checks) if checks else None,
        "confusion": checkers.confusion(checks) if checks else None,
        "frechet": _frechet(features, extractors, reference, references, progress) if reference else None,
        "horizon": _horizon(rows),
    }
    return Evaluation(_json_ready(summary), thumbs)


def _extract(extractors: list[FeatureExtractor], frames: np.ndarray, into: dict[str, list]) -> None:
    for extractor in extractors:
        into[extractor.name].append(extractor(frames))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, and mean, std, min and max of each metric over the videos that were scored."""
    ok = [row for row in rows if row["status"] == "ok"]
    names = list(dict.fromkeys(name for row in ok for name in row["metrics"]))
    stats = {}
    for name in names:
        values = np.array([row["metrics"].get(name) for row in ok], dtype=float)
        values = values[np.isfinite(values)]
        if len(values):
            stats[name] = {
                "mean": values.mean(),
                "std": values.std(),
                "min": values.min(),
                "max": values.max(),
            }
    return {"count": len(rows), "ok": len(ok), "errors": len(rows) - len(ok), "metrics": stats}


def _horizon(rows: list[dict[str, Any]]) -> dict[str, list[float]] | None:
    """Mean PSNR and SSIM at each frame index, over the videos compared with a reference."""
    compared = [row["reference"] for row in rows if row.get("reference") and "psnr" in row["reference"]]
    if not compared:
        return None
    return {key: _ragged_mean([c[key] for c in compared]) for key in ("psnr", "ssim")}


def _ragged_mean(series: list[list[float]]) -> list[float]:
    length = max(len(s) for s in series)
    return [float(np.mean([s[i] for s in series if i < len(s)])) for i in range(length)]


def _frechet(
    features: dict[str, list],
    extractors: list[FeatureExtractor],
    reference: str | Path,
    references: dict[str, Path],
    progress: bool,
) -> dict[str, Any]:
    """Fréchet distances between the scored videos and every video in the reference folder."""
    reference_features = {e.name: [] for e in extractors}
    for path in tqdm(list(references.values()), desc="reference", unit="video", disable=not progress):
        try:
            frames, _ = read_video(path)
        except Exception:  # an unreadable reference only shrinks the reference set
            continue
        _extract(extractors, frames, reference_features)
    counts = {"count": len(features["stats"]), "reference_count": len(reference_features["stats"])}
    result: dict[str, Any] = {"reference": str(reference), **counts}
    if min(counts.values()) < 2:
        return result | {
            "available": False,
            "reason": "Fréchet distances need at least 2 videos on each side",
        }
    result["stats_distance"] = set_distance(
        np.array(features["stats"]), np.array(reference_features["stats"])
    )
    if "i3d" not in features:
        return result | {"available": False, "reason": FVD_UNAVAILABLE}
    fvd = set_distance(np.array(features["i3d"]), np.array(reference_features["i3d"]))
    return result | {"available": True, "feature": "i3d", "value": fvd}


def _json_ready(value: Any) -> Any:
    """Plain JSON types throughout, with NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(summary: dict[str, Any], columns: Iterable[str] | None = None) -> str:
    """A plain-text table of the videos and their main metrics, for the console."""
    columns = list(
        columns or ("temporal_consistency", "sharpness_mean", "motion", "temporal_flickering", "mean_flow")
    )
    short = {
        "temporal_consistency": "consist",
        "sharpness_mean": "sharp",
        "motion": "motion",
        "temporal_flickering": "flicker",
        "mean_flow": "flow",
    }
    header = ["video", *(short.get(c, c) for c in columns), "psnr", "check"]
    lines = [header]
    for row in summary["videos"]:
        if row["status"] != "ok":
            lines.append([row["path"], f"error: {row['error']}"])
            continue
        values = [format_number(row["metrics"].get(c)) for c in columns]
        reference = row.get("reference") or {}
        lines.append(
            [row["path"], *values, format_number(reference.get("psnr_mean")), _check_cell(row.get("check"))]
        )
    return _align(lines)


def format_number(value: float | None) -> str:
    """A metric for a console table: 3 decimals, 1 above 100, '-' when missing."""
    if value is None:
        return "-"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"


def _check_cell(check: dict[str, Any] | None) -> str:
    if not check:
        return "-"
    correct = check["correct"]
    # None marks an attribute the prompt didn't name: it can't be wrong.
    flags = {key: all(v is not False for v in correct[key]) for key in ("color", "shape", "motion")}
    flags["count"] = correct["count"]
    missed = [key for key, right in flags.items() if not right]
    return "miss " + ",".join(missed) if missed else "ok"


def _align(lines: list[list[str]]) -> str:
    widths = [
        max(len(line[i]) for line in lines if len(line) > i and len(line) > 2) for i in range(len(lines[0]))
    ]
    out = []
    for line in lines:
        if len(line) == 2 and len(lines[0]) > 2:  # an error row spans the metric columns
            out.append(f"{line[0]:<{widths[0]}}  {line[1]}")
        else:
            out.append(
                "  ".join(
                    f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}"
                    for i, (cell, w) in enumerate(zip(line, widths, strict=True))
                )
            )
    return "\n".join(out)
