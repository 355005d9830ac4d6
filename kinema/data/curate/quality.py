"""Stage 3: quality per scene (OpenCV), from signals gathered while the file is decoded once.

Every frame gives its mean luma and its mean |difference| to the previous frame (black and frozen
frames). Frames sampled at `sample_fps` also give the variance of the Laplacian (sharpness),
Farnebäck optical flow to the previous sample with the book's parameters (motion, and shake: how
much the camera's global motion changes between samples), row and column brightness (letterbox
bars) and a perceptual hash (dedup). A scene then reads its own slice of those signals.

Units: sharpness at the analysis width; motion and shake in % of the frame width per second.
"""

from __future__ import annotations

import bisect

import cv2
import imagehash
import numpy as np
from PIL import Image

from kinema.data.curate.probe import rejection
from kinema.data.curate.recipe import AnalysisOptions, QualityGates

# The book's Farnebäck parameters: pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags.
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)


class FrameSignals:
    """Per-frame and per-sample measurements of one video, gathered in a single decoding pass."""

    def __init__(self, options: AnalysisOptions, fps: float) -> None:
        self.options, self.fps = options, fps
        self.every = max(1, round(fps / options.sample_fps))  # frames between samples
        self.luma: list[float] = []
        self.change: list[float] = [np.nan]
        self.samples: list[int] = []
        self.sharpness: list[float] = []
        self.flow: list[tuple[float, float, float]] = []  # speed, global dx, dy, from the previous sample
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.hashes: list[str] = []
        self._previous: np.ndarray | None = None
        self._previous_sample: np.ndarray | None = None

    def feed(self, frame_bgr: np.ndarray) -> None:
        """Measure the next frame."""
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        index = len(self.luma)
        self.luma.append(float(gray.mean()))
        if self._previous is not None:
            self.change.append(float(cv2.absdiff(gray, self._previous).mean()))
        self._previous = gray
        if index % self.every == 0:
            self._measure_sample(index, gray)

    def samples_in(self, start: int, end: int) -> range:
        """Indices (into the per-sample lists) of the samples taken from frames [start, end)."""
        return range(bisect.bisect_left(self.samples, start), bisect.bisect_left(self.samples, end))

    def _measure_sample(self, index: int, gray: np.ndarray) -> None:
        self.samples.append(index)
        self.sharpness.append(float(cv2.Laplacian(gray, cv2.CV_64F).var()))
        self.rows.append(gray.mean(axis=1).astype(np.float32))
        self.cols.append(gray.mean(axis=0).astype(np.float32))
        self.hashes.append(str(imagehash.phash(Image.fromarray(gray))))
        self.flow.append(self._flow_from_previous(gray))
        self._previous_sample = gray

    def _flow_from_previous(self, gray: np.ndarray) -> tuple[float, float, float]:
        if self._previous_sample is None:
            return (np.nan, np.nan, np.nan)
        flow = cv2.calcOpticalFlowFarneback(self._previous_sample, gray, None, *FARNEBACK)
        per_second = 100.0 * self.fps / (self.every * gray.shape[1])  # px per gap -> % width per s
        speed = float(np.linalg.norm(flow, axis=2).mean()) * per_second
        dx, dy = (float(np.median(flow[..., i])) * per_second for i in range(2))
        return speed, dx, dy


def scene_measurements(signals: FrameSignals, start: int, end: int) -> dict:
    """Everything measured about frames [start, end) of the video, as plain floats."""
    black_level = signals.options.black_level
    luma = np.asarray(signals.luma[start:end])
    change = np.asarray(signals.change[start + 1 : end])  # pairs inside the scene only
    in_scene = signals.samples_in(start, end)
    # A flow pair counts only when both of its samples lie inside the scene.
    pairs = [i for i in in_scene if i > 0 and signals.samples[i - 1] >= start]
    flow = np.asarray([signals.flow[i] for i in pairs]).reshape(-1, 3)
    global_motion = flow[:, 1:]
    shake = np.linalg.norm(np.diff(global_motion, axis=0), axis=1) if len(flow) > 1 else np.zeros(0)
    return {
        "seconds": (end - start) / signals.fps,
        "sharpness": _median([signals.sharpness[i] for i in in_scene]),
        "motion": _median(flow[:, 0]),
        "shake": float(shake.mean()) if shake.size else 0.0,
        "black": float((luma < black_level).mean()) if luma.size else 0.0,
        "frozen": float((change < signals.options.frozen_level).mean()) if change.size else 0.0,
        "letterbox": _letterbox(signals, in_scene, black_level),
    }


def scene_hashes(signals: FrameSignals, start: int, end: int, count: int) -> list[str]:
    """`count` pHashes at evenly spaced relative times in the scene, so copies of it line up."""
    in_scene = signals.samples_in(start, end)
    if not in_scene:
        return []
    picks = np.linspace(0, len(in_scene) - 1, count).round().astype(int)
    return [signals.hashes[in_scene[p]] for p in picks]


def quality_problem(m: dict, gates: QualityGates) -> dict | None:
    """The first quality gate a scene fails, as a rejection, or None."""
    checks = (
        ("scene_too_short", m["seconds"] < gates.min_scene_seconds, f"{m['seconds']:.2f} s"),
        ("black", m["black"] > gates.max_black, f"{m['black']:.0%} of frames black"),
        ("static", m["motion"] < gates.min_motion, f"motion {m['motion']:.2f} %/s < {gates.min_motion}"),
        ("frozen", m["frozen"] > gates.max_frozen, f"{m['frozen']:.0%} of frames frozen"),
        (
            "blurry",
            m["sharpness"] < gates.min_sharpness,
            f"sharpness {m['sharpness']:.1f} < {gates.min_sharpness}",
        ),
        ("too_fast", m["motion"] > gates.max_motion, f"motion {m['motion']:.1f} %/s > {gates.max_motion}"),
        ("shaky", m["shake"] > gates.max_shake, f"shake {m['shake']:.1f} %/s > {gates.max_shake}"),
        ("letterbox", m["letterbox"]["lost"] > gates.max_letterbox, f"{m['letterbox']['lost']:.0%} is bars"),
    )
    for reason, failed, detail in checks:
        if failed:
            return rejection("quality", reason, detail)
    return None


def _median(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else 0.0


def _letterbox(signals: FrameSignals, in_scene: range, black_level: float) -> dict:
    """Bars: rows/columns at the edges that stay darker than `black_level` in every sample."""
    if not in_scene:
        return {"top": 0.0, "bottom": 0.0, "left": 0.0, "right": 0.0, "lost": 0.0}
    rows = np.max([signals.rows[i] for i in in_scene], axis=0) < black_level
    cols = np.max([signals.cols[i] for i in in_scene], axis=0) < black_level
    if rows.all() or cols.all():  # a black picture has no bars; the black gate handles it
        rows[:], cols[:] = False, False
    top, bottom = _run_length(rows), _run_length(rows[::-1])
    left, right = _run_length(cols), _run_length(cols[::-1])
    kept = (1 - (top + bottom) / rows.size) * (1 - (left + right) / cols.size)
    return {
        "top": top / rows.size,
        "bottom": bottom / rows.size,
        "left": left / cols.size,
        "right": right / cols.size,
        "lost": 1 - kept,
    }


def _run_length(flags: np.ndarray) -> int:
    """How many leading entries are True."""
    return int(np.argmin(flags)) if not flags.all() else flags.size
