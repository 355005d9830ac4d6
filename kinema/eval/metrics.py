"""Per-video metrics on decoded frames: uint8 (T, H, W, 3) RGB in, plain floats out.

The basics and their labels follow the book's chapter 1 (thresholds in shared/ANCHORS.md);
temporal_flickering is VBench's formula; dynamic degree is VBench's rule on Farnebäck flow
(VBench uses RAFT, whose weights we can't ship) with the book's chapter-2 flow parameters.
SSIM is Wang et al.'s: an 11×11 Gaussian window with sigma 1.5, on grey frames.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import cv2
import numpy as np

from kinema.io import check_frames

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
MAX_PSNR = 100.0  # identical frames score this, so means over a horizon stay finite
# cv2.calcOpticalFlowFarneback(pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags)
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)
FLOW_FPS = 8.0  # VBench samples about 8 frames a second before measuring dynamic degree
TOP_FLOW_FRACTION = 0.05  # VBench scores a frame pair by its fastest 5% of pixels

# (bound, label) pairs, checked in order: a value above (or below) the bound gets the label.
LABELS: dict[str, tuple[str, list[tuple[float, str]], str]] = {
    "temporal_consistency": (">", [(0.95, "very smooth"), (0.85, "good"), (0.75, "moderate")], "low"),
    "sharpness_mean": (">", [(500.0, "very sharp"), (200.0, "good"), (100.0, "moderate")], "soft"),
    "sharpness_middle": (">", [(500.0, "very sharp"), (200.0, "good"), (100.0, "moderate")], "soft"),
    "motion": ("<", [(0.1, "static"), (0.3, "subtle"), (0.5, "moderate")], "dynamic"),
}


def _video(frames: np.ndarray, min_frames: int = 1) -> np.ndarray:
    """`frames` checked as uint8 (T, H, W, 3) with at least `min_frames` frames."""
    frames = check_frames(frames)
    if len(frames) < min_frames:
        raise ValueError(f"need at least {min_frames} frames, got {len(frames)}")
    return frames


def to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W) luma of RGB frames, as OpenCV computes it."""
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two grey images, with the window's reach trimmed off the border."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim needs two grey images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW}, got {a.shape}")
    a, b = a.astype(np.float64), b.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * covariance + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    pad = SSIM_WINDOW // 2
    return float(ssim_map[pad:-pad, pad:-pad].mean())


def temporal_consistency(frames: np.ndarray) -> float:
    """Mean SSIM of every pair of consecutive grey frames; 1.0 for a still video."""
    gray = to_gray(_video(frames, min_frames=2))
    return float(np.mean([ssim(a, b) for a, b in itertools.pairwise(gray)]))


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image: high for crisp edges, low for blur."""
    return float(cv2.Laplacian(image, cv2.CV_64F).var())


def sharpness(frames: np.ndarray) -> dict[str, float]:
    """Laplacian variance of the middle frame and its mean over all frames."""
    gray = to_gray(_video(frames))
    values = [laplacian_variance(image) for image in gray]
    return {"sharpness_middle": values[len(values) // 2], "sharpness_mean": float(np.mean(values))}


def motion_score(frames: np.ndarray) -> float:
    """1 − SSIM(first grey frame, last grey frame): how far the video travels in all."""
    gray = to_gray(_video(frames, min_frames=2))
    return 1.0 - ssim(gray[0], gray[-1])


def temporal_flickering(frames: np.ndarray) -> float:
    """VBench's (255 − mean |frame_t − frame_t+1|) / 255 over RGB pixels; 1.0 for a still video."""
    _video(frames, min_frames=2)
    difference = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean()
    return float((255.0 - difference) / 255.0)


def optical_flow(frames: np.ndarray) -> np.ndarray:
    """Farnebäck flow between consecutive grey frames: float32 (T − 1, H, W, 2) in pixels (dx, dy)."""
    gray = to_gray(_video(frames, min_frames=2))
    return np.stack(
        [cv2.calcOpticalFlowFarneback(a, b, None, *FARNEBACK) for a, b in itertools.pairwise(gray)]
    )


def flow_metrics(frames: np.ndarray, fps: float) -> dict[str, float]:
    """Mean flow speed (pixels per frame) and VBench's dynamic degree (1.0 moving, 0.0 static).

    Dynamic degree resamples to about 8 fps, scores each pair by the mean of its fastest 5% of
    pixels, and calls the video dynamic when round(4 · T / 16) pairs beat 6 px at 256 px size.
    """
    _video(frames, min_frames=2)
    speed = np.linalg.norm(optical_flow(frames), axis=-1)
    stride = max(1, round(fps / FLOW_FPS)) if fps > 0 else 1
    sampled = frames[::stride] if len(frames[::stride]) >= 2 else frames[[0, -1]]
    sampled_speed = speed if stride == 1 else np.linalg.norm(optical_flow(sampled), axis=-1)
    top = max(1, int(sampled_speed[0].size * TOP_FLOW_FRACTION))
    pair_scores = np.sort(sampled_speed.reshape(len(sampled_speed), -1), axis=1)[:, -top:].mean(axis=1)
    threshold = 6.0 * min(frames.shape[1:3]) / 256.0
    needed = max(1, round(4 * len(sampled) / 16))
    dynamic = int(np.sum(pair_scores > threshold)) >= needed
    return {"mean_flow": float(speed.mean()), "dynamic_degree": float(dynamic)}


def psnr_per_frame(frames: np.ndarray, reference: np.ndarray) -> list[float]:
    """PSNR in dB of each frame against the reference frame at the same index, capped at MAX_PSNR."""
    _check_pair(frames, reference)
    error = (frames.astype(np.float64) - reference.astype(np.float64)) ** 2
    mse = error.reshape(len(frames), -1).mean(axis=1)
    return [MAX_PSNR if m == 0 else min(MAX_PSNR, 10.0 * math.log10(255.0**2 / m)) for m in mse]


def ssim_per_frame(frames: np.ndarray, reference: np.ndarray) -> list[float]:
    """SSIM of each grey frame against the reference frame at the same index."""
    _check_pair(frames, reference)
    return [ssim(a, b) for a, b in zip(to_gray(frames), to_gray(reference), strict=True)]


def _check_pair(frames: np.ndarray, reference: np.ndarray) -> None:
    _video(frames)
    _video(reference)
    if frames.shape != reference.shape:
        raise ValueError(f"frames {frames.shape} and reference {reference.shape} differ in shape")


def label(metric: str, value: float | None) -> str | None:
    """The book's interpretation of a metric value ("good", "soft", ...), or None if it has none."""
    if metric not in LABELS or value is None or math.isnan(value):
        return None
    direction, bounds, otherwise = LABELS[metric]
    for bound, name in bounds:
        if (value > bound) if direction == ">" else (value < bound):
            return name
    return otherwise


def video_metrics(frames: np.ndarray, fps: float) -> dict[str, Any]:
    """Every per-video metric of one clip, plus the labels of those that have one."""
    _video(frames, min_frames=2)
    values = {
        "temporal_consistency": temporal_consistency(frames),
        **sharpness(frames),
        "motion": motion_score(frames),
        "temporal_flickering": temporal_flickering(frames),
        **flow_metrics(frames, fps),
    }
    labels = {name: label(name, value) for name, value in values.items() if name in LABELS}
    return {"metrics": values, "labels": labels}
