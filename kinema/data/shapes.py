"""The shapes world: procedural, seed-deterministic captioned clips of colored shapes with ground truth.

Each clip shows one or two flat shapes, each with one color and one motion, on a black, solid or
gradient background. Positions are in pixels with pixel (0, 0) centred at (0, 0). An object's
`size` is the radius for a circle, half the side for a square and the circumradius for a
triangle; its `angle` is in degrees, clockwise on screen, with squares axis-aligned and
triangles pointing up at 0. Trajectories are functions of normalised time t in [0, 1] scaled by
the frame size, so more frames or pixels show the same motion more finely.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from kinema.data.manifest import ClipRecord, relative_to_manifest, write_manifest
from kinema.io import atomic_write_text, write_video

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (235, 30, 30),
    "orange": (255, 130, 0),
    "yellow": (250, 235, 20),
    "green": (30, 215, 40),
    "cyan": (0, 225, 235),
    "blue": (40, 80, 255),
    "purple": (175, 50, 245),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
# Dark enough (max channel <= 72) that no background pixel reads as any object color.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (72, 72, 72),
    "navy": (16, 22, 72),
    "brown": (68, 42, 22),
}
BACKGROUND_KINDS = ("black", "solid", "gradient")

COLOR_PHRASES: dict[str, tuple[str, ...]] = {
    c: (c, f"bright {c}", f"vivid {c}", f"{c}-colored", f"solid {c}") for c in COLORS
}
SHAPE_PHRASES: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "ball", "round dot", "circular shape"),
    "square": ("square", "box", "block", "square tile", "square shape"),
    "triangle": ("triangle", "wedge", "triangular shape", "three-sided shape", "triangular tile"),
}
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "moving left": ("moving left", "sliding to the left", "drifting left", "heading left", "going left"),
    "moving right": (
        "moving right",
        "sliding to the right",
        "drifting right",
        "heading right",
        "going right",
    ),
    "moving up": ("moving up", "sliding upward", "drifting up", "rising", "floating upward"),
    "moving down": ("moving down", "sliding downward", "drifting down", "sinking", "descending"),
    "moving diagonally": (
        "moving diagonally",
        "sliding diagonally",
        "drifting diagonally",
        "going diagonally",
        "gliding diagonally",
    ),
    "bouncing": (
        "bouncing",
        "bouncing up and down",
        "hopping",
        "jumping up and down",
        "bouncing like a ball",
    ),
    "growing": ("growing", "getting bigger", "expanding", "swelling", "increasing in size"),
    "shrinking": ("shrinking", "getting smaller", "contracting", "dwindling", "decreasing in size"),
    "rotating": ("rotating", "spinning", "turning", "rotating in place", "twirling"),
    "staying still": ("staying still", "sitting still", "not moving", "motionless", "standing still"),
}
# A rotating circle would look still, so "rotating" is only sampled for squares and triangles.
MOTIONS = tuple(MOTION_PHRASES)
SENTENCE_TEMPLATES = (
    "{objects}{background}.",
    "A video of {objects}{background}.",
    "A clip showing {objects}{background}.",
    "There is {objects}{background}.",
    "We see {objects}{background}.",
    "Footage of {objects}{background}.",
    "An animation of {objects}{background}.",
)
JOINERS = (" and ", ", and ", " together with ", " along with ", " as well as ")
SOLID_PHRASES = (
    " on a {0} background",
    " against a {0} backdrop",
    " over a plain {0} background",
    " on a solid {0} background",
    " in front of a {0} wall",
)
# A vertical gradient runs from the first color at the top to the second at the bottom; a
# horizontal one from left to right.
GRADIENT_PHRASES = (
    " against a {2} {0} to {1} gradient",
    " on a {2} gradient from {0} to {1}",
    " over a {2} {0}-to-{1} gradient",
    " on a {2} gradient background going from {0} to {1}",
    " in front of a {2} {0} to {1} gradient",
)

SIZE_FRACTION = (0.09, 0.16)  # of min(H, W), for objects whose size doesn't change
LARGE_SIZE_FRACTION = (0.14, 0.2)  # the large end of growing and shrinking
SIZE_CHANGE = (1.6, 2.2)
# Squares and triangles are scaled so all three shapes cover roughly the same area.
SHAPE_SCALE = {"circle": 1.0, "square": 0.9, "triangle": 1.4}
# Distance from the centre to the farthest point, in units of `size`, at any angle.
REACH = {"circle": 1.0, "square": math.sqrt(2.0), "triangle": 1.0}
TRAVEL_FRACTION = (0.35, 0.55)  # of the frame's width or height
BOUNCES = (1.0, 2.0)  # ball-like arches per clip
ROTATION_DEGREES = (60.0, 120.0)
EDGE_MARGIN = 1.0  # pixels kept clear at the frame border, for antialiasing
OBJECT_GAP = 2.0  # pixels kept clear between two objects
PLACEMENT_TRIES = 50
SUBPIXEL_BITS = 4  # fixed-point fraction bits for cv2 drawing
SUPERSAMPLE = 4
SPLITS = ("train", "test", "all")
# Combos kept out of the train split to test composition; each value still appears in other combos.
DEFAULT_HELD_OUT = (
    "triangle/red/rotating",
    "circle/blue/bouncing",
    "square/yellow/growing",
    "circle/green/moving left",
)
DEFAULT_BACKGROUND_WEIGHTS = (0.5, 0.25, 0.25)  # black, solid, gradient


@dataclass
class ShapesConfig:
    """Size, length and sampling of a shapes world."""

    width: int = 64
    height: int = 64
    frames: int = 17
    fps: float = 8.0
    max_objects: int = 2
    background_weights: list[float] = field(default_factory=lambda: list(DEFAULT_BACKGROUND_WEIGHTS))
    held_out: list[str] = field(default_factory=lambda: list(DEFAULT_HELD_OUT))  # "shape/color/motion"
    split: str = "train"  # train: no held-out combo; test: first object is one; all: no filtering

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        if self.width < 16 or self.height < 16:
            raise ValueError(f"width and height must be >= 16 pixels, got {self.width}x{self.height}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if self.max_objects not in (1, 2):
            raise ValueError(f"max_objects must be 1 or 2, got {self.max_objects}")
        weights = list(self.background_weights)
        if len(weights) != len(BACKGROUND_KINDS) or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"background_weights must be 3 non-negative numbers, not all zero, for "
                f"{', '.join(BACKGROUND_KINDS)}; got {weights}"
            )
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r}")
        for combo in self.held_out:
            _parse_combo(combo)
        if self.split == "test" and not self.held_out:
            raise ValueError("split 'test' needs at least one held_out combo")


def _parse_combo(combo: str) -> tuple[str, str, str]:
    """Split a held-out "shape/color/motion" entry, or raise ValueError saying what is wrong."""
    parts = tuple(p.strip() for p in combo.split("/"))
    if len(parts) != 3:
        raise ValueError(f"held_out entry {combo!r} must look like 'shape/color/motion'")
    vocabularies = {"shape": SHAPES, "color": COLORS, "motion": MOTIONS}
    for (name, valid), value in zip(vocabularies.items(), parts, strict=True):
        if value not in valid:
            raise ValueError(f"held_out entry {combo!r}: unknown {name} {value!r}; valid: {', '.join(valid)}")
    if (parts[0], parts[2]) == ("circle", "rotating"):
        raise ValueError(f"held_out entry {combo!r}: a rotating circle is never generated")
    return parts


def all_combos() -> list[tuple[str, str, str]]:
    """Every (shape, color, motion) the world can generate; a rotating circle would look still."""
    return [
        (s, c, m) for s in SHAPES for c in COLORS for m in MOTIONS if not (s == "circle" and m == "rotating")
    ]


@dataclass
class ShapeObject:
    """One object: what it is, and its centre, size and angle on every frame."""

    shape: str
    color: str
    motion: str
    cx: np.ndarray
    cy: np.ndarray
    size: np.ndarray
    angle: np.ndarray

    def reach(self) -> np.ndarray:
        """Per-frame radius of the circle around the centre that contains the whole shape."""
        return self.size * REACH[self.shape]

    def ground_truth(self) -> dict[str, Any]:
        """The object's attributes and per-frame track as JSON-ready lists."""
        track = {k: getattr(self, k).astype(float).tolist() for k in ("cx", "cy", "size", "angle")}
        return {"shape": self.shape, "color": self.color, "motion": self.motion, **track}


@dataclass
class ShapesClip:
    """A rendered clip with its caption, objects and background."""

    frames: np.ndarray
    caption: str
    objects: list[ShapeObject]
    background: dict[str, Any]
    fps: float

    def ground_truth(self) -> dict[str, Any]:
        """Everything needed to check a render or a generated clip, JSON-serialisable."""
        num_frames, height, width, _ = self.frames.shape
        return {
            "caption": self.caption,
            "background": self.background,
            "fps": self.fps,
            "num_frames": num_frames,
            "width": width,
            "height": height,
            "objects": [obj.ground_truth() for obj in self.objects],
        }


def make_clip(config: ShapesConfig, index: int, seed: int = 0) -> ShapesClip:
    """Clip `index` of the world with seed `seed`; the same arguments always give the same clip."""
    config.validate()
    rng = np.random.default_rng([seed, index])
    background = _sample_background(rng, config.background_weights)
    objects = _sample_objects(rng, config)
    frames = render(objects, background, config.width, config.height)
    caption = make_caption(objects, background, rng)
    return ShapesClip(frames, caption, objects, background, config.fps)


def _pick(rng: np.random.Generator, options: Any) -> Any:
    """One element of a sequence, uniformly."""
    return options[rng.integers(len(options))]


def _sample_background(rng: np.random.Generator, weights: list[float]) -> dict[str, Any]:
    """A black, solid or gradient background, drawn with the given weights."""
    p = np.asarray(weights, dtype=float)
    kind = BACKGROUND_KINDS[rng.choice(len(BACKGROUND_KINDS), p=p / p.sum())]
    if kind == "black":
        return {"kind": "black", "colors": ["black"]}
    if kind == "solid":
        return {"kind": "solid", "colors": [_pick(rng, [n for n in BACKGROUNDS if n != "black"])]}
    names = list(BACKGROUNDS)
    first, second = rng.choice(len(names), size=2, replace=False)
    return {
        "kind": "gradient",
        "colors": [names[first], names[second]],
        "direction": _pick(rng, ("vertical", "horizontal")),
    }


def _sample_objects(rng: np.random.Generator, config: ShapesConfig) -> list[ShapeObject]:
    """One or two objects of distinct colors that never overlap, respecting the split."""
    held_out = {_parse_combo(c) for c in config.held_out}
    allowed = [c for c in all_combos() if config.split != "train" or c not in held_out]
    first_pool = sorted(held_out) if config.split == "test" else allowed
    first_combo = _pick(rng, first_pool)
    t, width, height = np.linspace(0.0, 1.0, config.frames), config.width, config.height
    if rng.integers(1, config.max_objects + 1) == 1:
        return [_sample_object(rng, first_combo, t, width, height)]
    second_combo = _pick(rng, [c for c in allowed if c[1] != first_combo[1]])
    for _ in range(PLACEMENT_TRIES):
        first = _sample_object(rng, first_combo, t, width, height)
        second = _sample_object(rng, second_combo, t, width, height)
        if not _overlap(first, second):
            return [first, second]
    return [first]


def _overlap(a: ShapeObject, b: ShapeObject) -> bool:
    """Whether the two objects' enclosing circles come within OBJECT_GAP on any frame."""
    distance = np.hypot(a.cx - b.cx, a.cy - b.cy)
    return bool(np.any(distance < a.reach() + b.reach() + OBJECT_GAP))


def _sample_object(
    rng: np.random.Generator, combo: tuple[str, str, str], t: np.ndarray, width: int, height: int
) -> ShapeObject:
    """An object of the given shape, color and motion with a random track that stays in frame."""
    shape, color, motion = combo
    size = _size_track(rng, shape, motion, t, min(width, height))
    reach = float(size.max()) * REACH[shape] + EDGE_MARGIN
    cx, cy = _position_track(rng, motion, t, width, height, reach)
    return ShapeObject(shape, color, motion, cx, cy, size, _angle_track(rng, motion, t))


def _size_track(rng: np.random.Generator, shape: str, motion: str, t: np.ndarray, scale: float) -> np.ndarray:
    """Per-frame size: constant, or changing linearly by a factor of SIZE_CHANGE."""
    scale *= SHAPE_SCALE[shape]
    if motion not in ("growing", "shrinking"):
        return np.full_like(t, rng.uniform(*SIZE_FRACTION) * scale)
    large = rng.uniform(*LARGE_SIZE_FRACTION) * scale
    small = large / rng.uniform(*SIZE_CHANGE)
    start, end = (small, large) if motion == "growing" else (large, small)
    return start + (end - start) * t


def _angle_track(rng: np.random.Generator, motion: str, t: np.ndarray) -> np.ndarray:
    """Per-frame angle: 0, or turning steadily by ROTATION_DEGREES either way."""
    if motion != "rotating":
        return np.zeros_like(t)
    return _pick(rng, (-1.0, 1.0)) * rng.uniform(*ROTATION_DEGREES) * t


def _position_track(
    rng: np.random.Generator, motion: str, t: np.ndarray, width: int, height: int, reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame centre inside [reach, side - 1 - reach] on both axes."""
    x_lo, x_hi, y_lo, y_hi = reach, width - 1 - reach, reach, height - 1 - reach
    fraction = rng.uniform(*TRAVEL_FRACTION)
    x = np.full_like(t, rng.uniform(x_lo, x_hi))
    y = np.full_like(t, rng.uniform(y_lo, y_hi))
    if motion in ("moving left", "moving right"):
        x = _sweep(rng, x_lo, x_hi, fraction * width, t, reverse=motion == "moving left")
    elif motion in ("moving up", "moving down"):
        y = _sweep(rng, y_lo, y_hi, fraction * height, t, reverse=motion == "moving up")
    elif motion == "moving diagonally":
        travel = min(fraction * min(width, height), x_hi - x_lo, y_hi - y_lo)
        x = _sweep(rng, x_lo, x_hi, travel, t, reverse=bool(rng.integers(2)))
        y = _sweep(rng, y_lo, y_hi, travel, t, reverse=bool(rng.integers(2)))
    elif motion == "bouncing":
        y = _bounce(rng, y_lo, y_hi, fraction * height, t)
    return x, y


def _sweep(
    rng: np.random.Generator, lo: float, hi: float, travel: float, t: np.ndarray, reverse: bool
) -> np.ndarray:
    """Positions covering `travel` pixels (at most hi - lo) at constant speed inside [lo, hi]."""
    travel = min(travel, hi - lo)
    positions = lo + rng.uniform(0.0, hi - lo - travel) + travel * t
    return lo + hi - positions if reverse else positions


def _bounce(rng: np.random.Generator, lo: float, hi: float, height: float, t: np.ndarray) -> np.ndarray:
    """Vertical positions of a ball bouncing on a floor in parabolic arches, starting on the floor."""
    height = min(height, hi - lo)
    floor = rng.uniform(lo + height, hi)
    phase = (rng.uniform(*BOUNCES) * t) % 1.0
    return floor - height * 4.0 * phase * (1.0 - phase)


def render(objects: list[ShapeObject], background: dict[str, Any], width: int, height: int) -> np.ndarray:
    """Draw the objects over the background on every frame: uint8 (T, H, W, 3) RGB."""
    num_frames = len(objects[0].cx)
    frames = np.repeat(
        background_image(background, width, height)[None].astype(np.float32), num_frames, axis=0
    )
    for obj in objects:
        color = np.array(COLORS[obj.color], dtype=np.float32)
        for i, frame in enumerate(frames):
            frame += _coverage(obj, i, width, height)[..., None] * (color - frame)
    return frames.round().astype(np.uint8)


def background_image(background: dict[str, Any], width: int, height: int) -> np.ndarray:
    """The background alone as a uint8 (H, W, 3) image."""
    colors = np.array([BACKGROUNDS[name] for name in background["colors"]], dtype=float)
    if background["kind"] != "gradient":
        return np.broadcast_to(colors[0].astype(np.uint8), (height, width, 3)).copy()
    vertical = background["direction"] == "vertical"
    ramp = np.linspace(0.0, 1.0, height if vertical else width)[:, None]
    line = colors[0] + ramp * (colors[1] - colors[0])
    image = line[:, None, :] if vertical else line[None, :, :]
    return np.broadcast_to(image.round().astype(np.uint8), (height, width, 3)).copy()


def _coverage(obj: ShapeObject, i: int, width: int, height: int) -> np.ndarray:
    """The fraction of each pixel that the object covers on frame `i`, as float32 (H, W).

    Drawn SUPERSAMPLE times larger and area-averaged down: cv2's own antialiased fill fattens a
    shape by about half a pixel, which would make the pixels disagree with the ground-truth size.
    """
    canvas = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE), dtype=np.uint8)
    if obj.shape == "circle":
        center = _canvas_points(np.array([[obj.cx[i], obj.cy[i]]]))[0]
        radius = round(obj.size[i] * SUPERSAMPLE * (1 << SUBPIXEL_BITS))
        cv2.circle(
            canvas, (int(center[0]), int(center[1])), radius, 255, cv2.FILLED, cv2.LINE_AA, SUBPIXEL_BITS
        )
    else:
        corners = _vertices(obj.shape, obj.cx[i], obj.cy[i], obj.size[i], obj.angle[i])
        cv2.fillPoly(canvas, [_canvas_points(corners)], 255, cv2.LINE_AA, SUBPIXEL_BITS)
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _canvas_points(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates (pixel centres at integers) as fixed-point coordinates on the supersampled canvas."""
    return np.round(((points + 0.5) * SUPERSAMPLE - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _vertices(shape: str, cx: float, cy: float, size: float, angle: float) -> np.ndarray:
    """A square's or triangle's corners as an (n, 2) array of x, y."""
    sides, first = (4, 45.0) if shape == "square" else (3, 0.0)
    theta = np.radians(angle + first + 360.0 / sides * np.arange(sides))
    radius = size * REACH[shape]
    return np.stack([cx + radius * np.sin(theta), cy - radius * np.cos(theta)], axis=1)


def make_caption(objects: list[ShapeObject], background: dict[str, Any], rng: np.random.Generator) -> str:
    """A caption naming each object's color, shape and motion, and the background unless black."""
    phrases = [_object_phrase(obj, rng) for obj in objects]
    sentence = _pick(rng, SENTENCE_TEMPLATES).format(
        objects=_pick(rng, JOINERS).join(phrases), background=_background_phrase(background, rng)
    )
    return sentence[0].upper() + sentence[1:]


def _object_phrase(obj: ShapeObject, rng: np.random.Generator) -> str:
    """E.g. "an orange-colored box sliding to the left"."""
    color = _pick(rng, COLOR_PHRASES[obj.color])
    article = "an" if color[0] in "aeiou" else "a"
    return (
        f"{article} {color} {_pick(rng, SHAPE_PHRASES[obj.shape])} {_pick(rng, MOTION_PHRASES[obj.motion])}"
    )


def _background_phrase(background: dict[str, Any], rng: np.random.Generator) -> str:
    """E.g. " on a gray background"; empty for black."""
    if background["kind"] == "black":
        return ""
    if background["kind"] == "solid":
        return _pick(rng, SOLID_PHRASES).format(*background["colors"])
    return _pick(rng, GRADIENT_PHRASES).format(*background["colors"], background["direction"])


def _phrase_lookup() -> dict[str, tuple[str, str]]:
    """Every phrase the caption parser recognises, mapped to (kind, value)."""
    lookup = {name: ("backdrop", name) for name in BACKGROUNDS}
    lookup |= {name: ("color", name) for name in COLORS}
    for kind, table in (("shape", SHAPE_PHRASES), ("motion", MOTION_PHRASES)):
        lookup |= {phrase: (kind, value) for value, phrases in table.items() for phrase in phrases}
    lookup |= {word: ("direction", word) for word in ("vertical", "horizontal")}
    lookup |= {joiner.strip(" ,"): ("joiner", "") for joiner in JOINERS}
    return lookup | {"gradient": ("gradient", "")}


_PHRASES = _phrase_lookup()
# Longest first, so "bouncing up and down" wins over "bouncing" and the "and" inside it.
_PHRASE_PATTERN = re.compile(
    r"\b(" + "|".join(map(re.escape, sorted(_PHRASES, key=len, reverse=True))) + r")\b"
)


def parse_caption(text: str) -> dict[str, Any]:
    """Read objects (in order) and the background back from a caption or a simple prompt.

    A color belongs to the next shape; a motion to the shape before it unless a color or a
    joiner ("and", ...) came in between, else to the next shape. Attributes not mentioned are None.
    """
    objects: list[dict[str, str | None]] = []
    color = motion = None
    open_object = False
    backdrops: list[str] = []
    gradient, direction = False, None
    for match in _PHRASE_PATTERN.finditer(" ".join(text.lower().split())):
        kind, value = _PHRASES[match.group(0)]
        if kind == "shape":
            objects.append({"shape": value, "color": color, "motion": motion})
            color, motion, open_object = None, None, True
        elif kind == "motion" and open_object and objects[-1]["motion"] is None:
            objects[-1]["motion"] = value
        elif kind == "motion":
            motion = value
        elif kind == "color":
            color, open_object = value, False
        elif kind == "joiner":
            open_object = False
        elif kind == "backdrop":
            backdrops.append(value)
        elif kind == "direction":
            direction = value
        else:
            gradient = True
    return {"objects": objects, "background": _parsed_background(backdrops, gradient, direction)}


def _parsed_background(names: list[str], gradient: bool, direction: str | None) -> dict[str, Any]:
    """The background dict for the background names and words found in a caption."""
    if gradient and names:
        return {"kind": "gradient", "colors": [*names, "black"][:2], "direction": direction or "vertical"}
    if names and names[0] != "black":
        return {"kind": "solid", "colors": names[:1]}
    return {"kind": "black", "colors": ["black"]}


def synthesize(
    out_dir: str | os.PathLike, num: int, config: ShapesConfig, seed: int = 0, progress: bool = True
) -> Path:
    """Write `num` clips as mp4 plus ground-truth JSON and a manifest; return the manifest path.

    Resumable: a clip whose mp4 and JSON exist from the same config and seed is kept as is.
    """
    config.validate()
    if config.width % 2 or config.height % 2:
        raise ValueError(
            f"mp4 (H.264 yuv420p) needs an even width and height, got {config.width}x{config.height}"
        )
    manifest = Path(out_dir) / "manifest.jsonl"
    indices = tqdm(range(num), desc="shapes", unit="clip", disable=not progress)
    return write_manifest(manifest, [_synthesize_clip(manifest, config, seed, i) for i in indices])


def _synthesize_clip(manifest: Path, config: ShapesConfig, seed: int, index: int) -> ClipRecord:
    """Render and write one clip unless it is already on disk, and return its manifest record."""
    name = f"shapes_{index:06d}"
    video = manifest.parent / "clips" / f"{name}.mp4"
    truth_path = manifest.parent / "ground_truth" / f"{name}.json"
    provenance = json.loads(json.dumps({"seed": seed, "index": index, "config": asdict(config)}))
    truth = _existing_truth(video, truth_path, provenance)
    if truth is None:
        clip = make_clip(config, index, seed)
        write_video(video, clip.frames, clip.fps)
        truth = clip.ground_truth() | provenance
        atomic_write_text(truth_path, json.dumps(truth))
    objects = [{k: obj[k] for k in ("shape", "color", "motion")} for obj in truth["objects"]]
    meta = {
        "objects": objects,
        "background": truth["background"],
        "split": config.split,
        "seed": seed,
        "index": index,
        "ground_truth": relative_to_manifest(truth_path, manifest),
    }
    return ClipRecord(
        path=relative_to_manifest(video, manifest),
        fps=config.fps,
        num_frames=config.frames,
        width=config.width,
        height=config.height,
        caption=truth["caption"],
        meta=meta,
    )


def _existing_truth(video: Path, truth_path: Path, provenance: dict[str, Any]) -> dict[str, Any] | None:
    """The ground truth of a clip already written with the same config and seed, else None."""
    if not (video.is_file() and truth_path.is_file()):
        return None
    try:
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    same = all(truth.get(key) == value for key, value in provenance.items())
    return truth if same else None
