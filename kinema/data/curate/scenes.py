"""Stage 2: scene cuts with PySceneDetect, fed frames as they are decoded (no second decode)."""

from __future__ import annotations

import itertools

import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode

from kinema.data.curate.recipe import AnalysisOptions


class CutFinder:
    """Feed it every frame in order (BGR); `cuts()` is then the first frame of each new scene."""

    def __init__(self, options: AnalysisOptions, fps: float) -> None:
        self.fps = float(fps)  # scenedetect refuses an int rate
        self.frames = 0
        self._cuts: list[int] = []
        self._flushed = False
        if options.detector == "adaptive":
            self.detector = AdaptiveDetector(
                adaptive_threshold=options.threshold, min_scene_len=options.min_scene_len
            )
        else:
            self.detector = ContentDetector(threshold=options.threshold, min_scene_len=options.min_scene_len)

    def feed(self, frame_bgr: np.ndarray) -> None:
        """Process the next frame."""
        found = self.detector.process_frame(FrameTimecode(self.frames, self.fps), frame_bgr)
        self._cuts += [t.frame_num for t in found]
        self.frames += 1

    def cuts(self) -> list[int]:
        """Cut frames, once every frame has been fed (flushes the detector)."""
        if self.frames and not self._flushed:
            found = self.detector.post_process(FrameTimecode(self.frames - 1, self.fps))
            self._cuts += [t.frame_num for t in found]
            self._flushed = True
        return sorted({c for c in self._cuts if c > 0})


def scene_ranges(cuts: list[int], num_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges between cuts, covering the whole video."""
    edges = [0, *[c for c in cuts if 0 < c < num_frames], num_frames]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]
