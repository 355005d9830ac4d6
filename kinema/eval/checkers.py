"""Check a shapes-world video against what it should show: each object's color, shape and motion.

Pixels only (OpenCV and numpy, no model), so renders read back from mp4 and clips a model generated
are scored the same way. Every threshold is a fraction of the frame or a ratio, so any size works.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from kinema.data.shapes import COLORS, parse_caption
from kinema.io import check_frames

ATTRIBUTES = ("color", "shape", "motion")
# A pixel is lit when its brightest channel is well above any background's (<= 72 of 255); palette
# colors reach 215 or more, so anti-aliased edges count from about half coverage.
MIN_VALUE = 0.43
WHITE_SATURATION = 0.3  # every palette color but white is saturated above 0.79
MIN_CORE = 0.001  # of the frame: blobs with a smaller core are noise or a blurred edge
MIN_PRESENCE = 0.5  # of the frames: an object seen on fewer is not there
# |sum z^k| / sum |z|^k over an object's pixels z, relative to its centroid: the k-fold angular
# harmonic. A triangle's third is 0.5-0.7, a square's fourth 0.3-0.45; a circle has neither (< 0.17).
SHAPE_HARMONICS = {"triangle": (3, 0.3), "square": (4, 0.2)}
# Where the vertex harmonic points at angle 0: a triangle's apex is up, a square's corner up-right.
VERTEX_AT_ZERO = {"triangle": -90.0, "square": -45.0}
AREA_PER_SIZE2 = {"circle": math.pi, "square": 4.0, "triangle": 3.0 * math.sqrt(3.0) / 4.0}
MOVE = 0.12  # of min(H, W): the least travel, or travel back, that counts as movement
SIZE_CHANGE = 1.3  # the least factor that counts as growing or shrinking
MIN_ROTATION = 20.0  # degrees; the world turns by 60 or more, a steady shape jitters by under 5
# What a confusion table says the checker saw when it found no object of the wanted color, or
# found one whose track fits none of the world's motions.
NOT_FOUND, UNCLEAR = "not found", "unclear"

_CHROMATIC = [name for name in COLORS if name != "white"]
_HUES = np.array(
    [cv2.cvtColor(np.float32([[COLORS[n]]]) / 255.0, cv2.COLOR_RGB2HSV)[0, 0, 0] for n in _CHROMATIC]
)
_LABELS = [*_CHROMATIC, "white"]  # pixel label i + 1; 0 is background


@dataclass(eq=False)
class DetectedObject:
    """An object found by color, with its shape, motion and per-frame track (NaN where unseen)."""

    color: str
    shape: str
    motion: str | None  # None when the track fits no motion, e.g. jumping back and forth
    cx: np.ndarray
    cy: np.ndarray
    size: np.ndarray  # in the ground truth's units: radius, half side or circumradius
    angle: np.ndarray  # degrees clockwise, unwrapped; NaN for circles, which show no orientation

    def to_dict(self, tracks: bool = False) -> dict[str, Any]:
        """A JSON-ready summary, with the per-frame tracks (NaN as None) if asked."""
        seen = np.isfinite(self.cx)
        summary = {"color": self.color, "shape": self.shape, "motion": self.motion}
        summary["frames_seen"] = int(seen.sum())
        summary["mean_size"] = round(float(np.nanmean(self.size)), 2)
        if tracks:
            for key in ("cx", "cy", "size", "angle"):
                summary[key] = [None if math.isnan(v) else round(float(v), 2) for v in getattr(self, key)]
        return summary


def detect_objects(frames: np.ndarray) -> list[DetectedObject]:
    """Find every palette-colored object in uint8 (T, H, W, 3) RGB frames, with shape and motion."""
    frames = _checked(frames)
    num_frames, height, width, _ = frames.shape
    labels = _label_pixels(frames)
    found = []
    for code, color in enumerate(_LABELS, start=1):
        blobs = [_largest_blob(frame_labels == code, MIN_CORE * height * width) for frame_labels in labels]
        if sum(b is not None for b in blobs) >= MIN_PRESENCE * num_frames:
            found.append(_describe(color, blobs, min(height, width)))
    return found


def _checked(frames: np.ndarray) -> np.ndarray:
    """The frames as contiguous uint8 (T, H, W, 3) with T >= 2, or ValueError naming the problem."""
    frames = check_frames(frames)
    if len(frames) < 2:
        raise ValueError(f"need at least 2 frames to see motion, got {len(frames)}")
    return frames


def _label_pixels(frames: np.ndarray) -> np.ndarray:
    """Each pixel's palette label (index into _LABELS plus one), or 0 for background: (T, H, W)."""
    num_frames, height, width, _ = frames.shape
    flat = frames.reshape(num_frames * height, width, 3).astype(np.float32) / 255.0
    hsv = cv2.cvtColor(flat, cv2.COLOR_RGB2HSV).reshape(num_frames, height, width, 3)
    # Hue is what survives blending with a dark background and H.264's chroma blur.
    hue_gap = np.abs((hsv[..., :1] - _HUES + 180.0) % 360.0 - 180.0)
    labels = np.argmin(hue_gap, axis=-1) + 1
    labels[hsv[..., 1] < WHITE_SATURATION] = len(_LABELS)
    labels[hsv[..., 2] < MIN_VALUE] = 0
    return labels


def _largest_blob(mask: np.ndarray, min_core: float) -> np.ndarray | None:
    """The pixels, as complex x + iy, of the 8-connected blob with the largest core, if big enough.

    A blob's core is its pixels whose 3x3 neighbourhood is all the same color. Blended edges can read
    as another color (white over navy looks blue) but form thin rims, which have no core.
    """
    mask = mask.astype(np.uint8)
    count, components = cv2.connectedComponents(mask, connectivity=8)
    core = np.bincount(components[cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0], minlength=count)
    best = int(np.argmax(core))
    if best == 0 or core[best] < min_core:
        return None
    ys, xs = np.nonzero(components == best)
    return xs + 1j * ys


def _describe(color: str, blobs: list[np.ndarray | None], scale: int) -> DetectedObject:
    """Shape, track and motion of one color's blobs over the frames."""
    rows = np.array([_measure(blob) if blob is not None else [np.nan] * 4 for blob in blobs], complex)
    center, area, harmonics = rows[:, 0], rows[:, 1].real, {3: rows[:, 2], 4: rows[:, 3]}
    shape = _shape({k: float(np.nanmedian(np.abs(v))) for k, v in harmonics.items()})
    size = np.sqrt(area / AREA_PER_SIZE2[shape])
    angle = _angle(shape, harmonics)
    motion = _motion(center.real, center.imag, size, angle, MOVE * scale)
    return DetectedObject(color, shape, motion, center.real, center.imag, size, angle)


def _measure(blob: np.ndarray) -> list[complex]:
    """A blob's centroid, area, and third and fourth angular harmonics (see SHAPE_HARMONICS)."""
    center = blob.mean()
    offsets = blob - center
    harmonics = [(offsets**k).sum() / max((np.abs(offsets) ** k).sum(), 1e-9) for k in (3, 4)]
    return [center, len(blob), *harmonics]


def _shape(harmonics: dict[int, float]) -> str:
    """The shape whose vertex harmonic stands out most, or circle if none does."""
    scores = {shape: harmonics[k] / threshold for shape, (k, threshold) in SHAPE_HARMONICS.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] >= 1.0 else "circle"


def _angle(shape: str, harmonics: dict[int, np.ndarray]) -> np.ndarray:
    """Per-frame orientation in degrees clockwise, unwrapped over the shape's symmetry period."""
    if shape == "circle":
        return np.full(len(harmonics[3]), np.nan)
    k = SHAPE_HARMONICS[shape][0]
    period = 360.0 / k
    angle = np.degrees(np.angle(harmonics[k])) / k - VERTEX_AT_ZERO[shape]
    angle = (angle + period / 2) % period - period / 2
    seen = np.isfinite(angle)
    angle[seen] = np.degrees(np.unwrap(np.radians(angle[seen] * k))) / k
    return angle


def _motion(x: np.ndarray, y: np.ndarray, size: np.ndarray, angle: np.ndarray, move: float) -> str | None:
    """Which of the world's motions the track shows, or None if it shows none of them cleanly."""
    seen = np.isfinite(x)
    x, y, log_size, angle = x[seen], y[seen], np.log(size[seen]), angle[seen]
    if _retrace(y) >= move and np.ptp(x) < move:
        return "bouncing"
    if max(_retrace(x), _retrace(y)) >= move or _retrace(log_size) >= math.log(SIZE_CHANGE):
        return None  # goes back and forth but not like a bouncing ball, e.g. shuffled frames
    dx, dy, growth = x[-1] - x[0], y[-1] - y[0], math.exp(log_size[-1] - log_size[0])
    if abs(dx) >= move and abs(dy) >= move:
        return "moving diagonally"
    if abs(dx) >= move:
        return "moving right" if dx > 0 else "moving left"
    if abs(dy) >= move:
        return "moving down" if dy > 0 else "moving up"
    if max(growth, 1.0 / growth) >= SIZE_CHANGE:
        return "growing" if growth > 1.0 else "shrinking"
    if np.isfinite(angle).all() and np.ptp(angle) >= MIN_ROTATION:
        return "rotating"
    return "staying still"


def _retrace(values: np.ndarray) -> float:
    """How far a track goes back against its main direction: the smaller of its largest rise and fall.

    Unlike the path length, this does not add up the jitter of a noisy but steady track.
    """
    rise = np.max(values - np.minimum.accumulate(values))
    fall = np.max(np.maximum.accumulate(values) - values)
    return float(min(rise, fall))


def expected_from_caption(caption: str) -> list[dict[str, str | None]]:
    """The objects a caption or prompt asks for, as {shape, color, motion} (None where unsaid)."""
    return [{key: obj[key] for key in ATTRIBUTES} for obj in parse_caption(caption)["objects"]]


def expected_from_truth(truth: dict[str, Any]) -> list[dict[str, str | None]]:
    """The objects of a ground-truth dict, as written by `ShapesClip.ground_truth` and `synthesize`."""
    return [{key: obj[key] for key in ATTRIBUTES} for obj in truth["objects"]]


def check_video(frames: np.ndarray, expected: list[dict[str, str | None]]) -> dict[str, Any]:
    """Which expected colors, shapes and motions the video shows, and whether the object count is right."""
    expected = [{key: want.get(key) for key in ATTRIBUTES} for want in expected]
    found = detect_objects(frames)
    matches = _match(expected, found)
    correct: dict[str, Any] = {key: [] for key in ATTRIBUTES}
    for want, got in zip(expected, matches, strict=True):
        for key in ATTRIBUTES:
            correct[key].append(None if want[key] is None else got is not None and _agrees(key, want, got))
    correct["count"] = len(found) == len(expected)
    return {
        "expected": expected,
        "found": [obj.to_dict() for obj in found],
        "matched": [None if got is None else found.index(got) for got in matches],  # into "found"
        "correct": correct,
    }


def _match(expected: list[dict[str, str | None]], found: list[DetectedObject]) -> list[DetectedObject | None]:
    """For each expected object, the detected one of its color, or the best unclaimed one if none was said."""
    by_color = {obj.color: obj for obj in found}
    matches = [by_color.get(want["color"]) if want["color"] else None for want in expected]
    unclaimed = [obj for obj in found if obj not in matches]
    for i, want in enumerate(expected):
        if want["color"] is None and unclaimed:
            matches[i] = max(unclaimed, key=lambda obj: sum(_agrees(k, want, obj) for k in ATTRIBUTES))
            unclaimed.remove(matches[i])
    return matches


def _agrees(key: str, want: dict[str, str | None], got: DetectedObject) -> bool:
    """Whether a detected object shows the expected value of one attribute."""
    value = getattr(got, key)
    # A rotating circle looks exactly like a still one, so a prompt asking for one gets either.
    if key == "motion" and want["shape"] == "circle" and want["motion"] == "rotating":
        return value in ("rotating", "staying still")
    return value == want[key]


def confusion(checks: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """Per attribute and wanted value, how often the checker saw each value (the wanted one when right)."""
    table: dict[str, dict[str, dict[str, int]]] = {key: {} for key in ATTRIBUTES}
    for check in checks:
        for i, (want, match) in enumerate(zip(check["expected"], check["matched"], strict=True)):
            got = None if match is None else check["found"][match]
            for key in ATTRIBUTES:
                if want[key] is None:
                    continue
                seen = want[key] if check["correct"][key][i] else _seen_value(got, key)
                counts = table[key].setdefault(want[key], {})
                counts[seen] = counts.get(seen, 0) + 1
    return table


def _seen_value(got: dict[str, Any] | None, key: str) -> str:
    if got is None:
        return NOT_FOUND
    return got[key] or UNCLEAR


def mistakes(table: dict[str, dict[str, dict[str, int]]], attribute: str) -> list[tuple[str, str, int]]:
    """One attribute's (wanted, seen instead, count) of a confusion table, the most frequent first."""
    wrong = [
        (want, seen, n) for want, counts in table.get(attribute, {}).items() for seen, n in counts.items()
    ]
    return sorted((m for m in wrong if m[0] != m[1]), key=lambda m: (-m[2], m[0], m[1]))


def accuracy(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per attribute and for the count: how many checked values were right, of how many, and the ratio."""
    results = {}
    for key in (*ATTRIBUTES, "count"):
        values: list[bool | None] = []
        for check in checks:
            value = check["correct"][key]
            values += value if isinstance(value, list) else [value]
        counted = [v for v in values if v is not None]
        total, right = len(counted), sum(counted)
        results[key] = {"correct": right, "total": total, "accuracy": right / total if total else None}
    return results
