"""Stage 5: re-encode an accepted scene to the target fps, size and codec. Inputs are only read."""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

import numpy as np

from kinema.data.curate.recipe import NormalizeOptions
from kinema.io.video import crop_i420, iter_frames_at, scale_i420, video_writer


def normalize_scene(
    source: str | os.PathLike, start: float, end: float, bars: dict, options: NormalizeOptions, out: Path
) -> dict:
    """Write seconds [start, end) of `source` to `out`, bars cropped, and return its manifest fields.

    Frames stream through as 4:2:0 planes, never through RGB: the picture inside the bars is cut
    out, area-scaled to just cover the target size, and its centre is kept.
    """
    seconds = end - start
    if options.max_seconds > 0:
        seconds = min(seconds, options.max_seconds)
    total = max(1, math.floor(seconds * options.fps + 1e-6))
    times = [start + k / options.fps for k in range(total)]
    frames = iter_frames_at(source, times, pixel_format="yuv420p")
    first = next(frames)
    _, _, content_w, content_h = content_box(first, bars)
    size = options.size_for(content_w / content_h)
    with video_writer(out, *size, options.fps, crf=options.crf, pixel_format="yuv420p") as write:
        for planes in itertools.chain([first], frames):
            write(fit_i420(planes, bars, *size)[None])
    return {"fps": options.fps, "num_frames": total, "width": size[0], "height": size[1]}


def content_box(planes: np.ndarray, bars: dict) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the picture inside the bars of a yuv420p frame, on even pixels.

    The bars are rounded outward, so no bar row or column survives the crop.
    """
    frame_h, frame_w = planes.shape[0] * 2 // 3, planes.shape[1]
    top, left = _even_up(bars["top"] * frame_h), _even_up(bars["left"] * frame_w)
    bottom, right = _even_up(bars["bottom"] * frame_h), _even_up(bars["right"] * frame_w)
    return left, top, max(2, frame_w - left - right), max(2, frame_h - top - bottom)


def fit_i420(planes: np.ndarray, bars: dict, width: int, height: int) -> np.ndarray:
    """Cut bars (fractions of each side) off a yuv420p frame, then scale to cover and centre-crop."""
    left, top, content_w, content_h = content_box(planes, bars)
    content = crop_i420(planes, left, top, content_w, content_h)
    scale = max(width / content_w, height / content_h)
    cover_w, cover_h = (
        max(width, _even_up(content_w * scale - 1e-6)),
        max(height, _even_up(content_h * scale - 1e-6)),
    )
    covered = scale_i420(content, cover_w, cover_h)
    return crop_i420(covered, (cover_w - width) // 4 * 2, (cover_h - height) // 4 * 2, width, height)


def _even_up(pixels: float) -> int:
    return math.ceil(pixels / 2 - 1e-9) * 2
