"""The curation recipe: what is measured and where each gate sits (configs/curate.yaml).

Measurements are cached per file; thresholds are not, so changing a gate and re-running decides
again without decoding anything.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ProbeGates:
    """Hard gates on a whole file, from its container alone."""

    min_side: int = 128  # shorter side, pixels
    max_side: int = 4096  # longer side, pixels
    min_seconds: float = 1.0
    max_seconds: float = 3 * 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.min_side <= self.max_side:
            raise ValueError(f"probe: need 0 < min_side <= max_side, got {self.min_side}, {self.max_side}")
        if not 0 <= self.min_seconds <= self.max_seconds:
            raise ValueError(
                f"probe: need 0 <= min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}"
            )


@dataclass
class AnalysisOptions:
    """How each file is decoded once and measured; changing these re-analyses every file."""

    width: int = 256  # frames are measured at this width (never upscaled)
    sample_fps: float = 6.0  # rate of the costlier measurements: sharpness, optical flow, hashes
    detector: str = "content"  # PySceneDetect's "content" or "adaptive"
    threshold: float = 30.0  # ContentDetector threshold (AdaptiveDetector: its adaptive_threshold)
    min_scene_len: int = 15  # frames
    black_level: float = 16.0  # a frame darker than this mean luma is black; a bar row/column too
    frozen_level: float = 0.5  # consecutive frames closer than this mean |difference| are frozen
    hash_samples: int = 8  # pHashes kept per scene for dedup, at evenly spaced relative times

    def __post_init__(self) -> None:
        if self.detector not in ("content", "adaptive"):
            raise ValueError(f"analysis.detector must be 'content' or 'adaptive', got '{self.detector}'")
        if self.width < 32 or self.width % 2:
            raise ValueError(f"analysis.width must be even and >= 32, got {self.width}")
        for name in ("sample_fps", "threshold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"analysis.{name} must be positive, got {getattr(self, name)}")
        if self.min_scene_len < 1 or self.hash_samples < 1:
            raise ValueError("analysis.min_scene_len and analysis.hash_samples must be >= 1")

    def key(self) -> str:
        """A short hash of these options: cached measurements are valid only under the same key."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class QualityGates:
    """Per-scene gates on the measurements (see kinema/data/curate/quality.py for the units)."""

    min_scene_seconds: float = 1.0
    min_sharpness: float = 60.0  # variance of the Laplacian at the analysis width
    min_motion: float = 0.5  # mean optical-flow speed, % of the frame width per second
    max_motion: float = 60.0
    max_shake: float = 15.0  # mean change of the global flow between samples, % of width per second
    max_black: float = 0.3  # fraction of black frames
    max_frozen: float = 0.3  # fraction of frozen frame pairs
    max_letterbox: float = 0.35  # fraction of the picture lost to bars (they are cropped away)


@dataclass
class DedupOptions:
    """Near-duplicate scenes by the pHashes of frames at the same relative times (analysis.hash_samples)."""

    min_similarity: float = 0.9  # 1 - mean Hamming distance / 64 of the aligned pHashes

    def __post_init__(self) -> None:
        if not 0 < self.min_similarity <= 1:
            raise ValueError(f"dedup.min_similarity must be in (0, 1], got {self.min_similarity}")


@dataclass
class NormalizeOptions:
    """What each accepted scene is re-encoded to: aspect-preserving resize, centre crop, H.264."""

    fps: float = 24.0
    width: int = 256
    height: int = 144
    # Size buckets, e.g. [[256, 144], [192, 192], [144, 256]]: each scene goes to the bucket
    # nearest its own aspect ratio (bars excluded), and width/height are not used.
    buckets: list[list[int]] = field(default_factory=list)
    crf: int = 18
    max_seconds: float = 0.0  # > 0 keeps only the first this many seconds of a long scene

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"normalize.fps must be positive, got {self.fps}")
        for width, height in [(self.width, self.height), *map(tuple, self.buckets)]:
            if width < 2 or height < 2 or width % 2 or height % 2:
                raise ValueError(f"normalize sizes must be even, got {width}x{height}")
        if any(len(bucket) != 2 for bucket in self.buckets):
            raise ValueError(f"normalize.buckets must be [width, height] pairs, got {self.buckets}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"normalize.crf must be in 0..51, got {self.crf}")

    def size_for(self, aspect: float) -> tuple[int, int]:
        """The output size for a picture of this width/height ratio."""
        if not self.buckets:
            return self.width, self.height
        w, h = min(self.buckets, key=lambda b: abs(math.log(b[0] / b[1]) - math.log(aspect)))
        return w, h

    def key(self) -> str:
        """A short hash of these options, part of every normalized clip's cache entry."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class CaptionOptions:
    """Where captions come from, and optional concept balancing by caption embeddings."""

    # "module:function" called as fn(frames uint8 (T, H, W, 3), fps, source_path) -> str on each
    # accepted clip; empty means sidecar .txt/.json files, else the file name.
    captioner: str = ""
    balance: bool = False
    clusters: int = 8  # k-means clusters of MiniLM caption embeddings (fewer when clips are fewer)
    max_per_cluster: int = 100

    def __post_init__(self) -> None:
        if self.captioner and ":" not in self.captioner:
            raise ValueError(f"captions.captioner must look like module:function, got '{self.captioner}'")
        if self.clusters < 1 or self.max_per_cluster < 1:
            raise ValueError("captions.clusters and captions.max_per_cluster must be >= 1")


@dataclass
class CurateRecipe:
    """A whole curation run."""

    probe: ProbeGates = field(default_factory=ProbeGates)
    analysis: AnalysisOptions = field(default_factory=AnalysisOptions)
    quality: QualityGates = field(default_factory=QualityGates)
    dedup: DedupOptions = field(default_factory=DedupOptions)
    normalize: NormalizeOptions = field(default_factory=NormalizeOptions)
    captions: CaptionOptions = field(default_factory=CaptionOptions)
    workers: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)
