"""Stage 3: each measurement on frames where the right answer is known."""

import numpy as np
import pytest

from kinema.data.curate.quality import FrameSignals, quality_problem, scene_hashes, scene_measurements
from kinema.data.curate.recipe import AnalysisOptions, QualityGates

FPS, WIDTH, HEIGHT = 24.0, 128, 96


def texture(seed: int = 0, width: int = WIDTH * 2) -> np.ndarray:
    """A smooth random texture wider than a frame, to pan across."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (HEIGHT // 4, width // 4, 3), dtype=np.uint8)
    return np.kron(coarse, np.ones((4, 4, 1), np.uint8))


def measure(frames: list[np.ndarray], **options) -> dict:
    signals = FrameSignals(AnalysisOptions(width=WIDTH, sample_fps=FPS, **options), FPS)
    for frame in frames:
        signals.feed(frame)
    return scene_measurements(signals, 0, len(frames))


def pan(offsets: list[int]) -> list[np.ndarray]:
    canvas = texture()
    return [np.ascontiguousarray(canvas[:, x : x + WIDTH]) for x in offsets]


def test_steady_pan_speed_and_no_shake():
    m = measure(pan([2 * t for t in range(24)]))  # 2 px a frame
    assert m["motion"] == pytest.approx(2 * FPS / WIDTH * 100, rel=0.2)  # 37.5 % of the width a second
    assert m["shake"] < 3
    assert m["frozen"] == 0 and m["black"] == 0


def test_jitter_is_shake():
    steady = measure(pan([2 * t for t in range(24)]))
    jitter = measure(pan([(t % 2) * 4 for t in range(24)]))  # back and forth by 4 px
    assert jitter["shake"] > 10 * max(steady["shake"], 1)


def test_still_frames_are_static_and_frozen():
    m = measure([texture()[:, :WIDTH]] * 24)
    assert m["motion"] < 0.1 and m["frozen"] == 1.0  # Farnebäck leaves ~0.01 of noise
    assert quality_problem(m, QualityGates())["reason"] == "static"


def test_black_frames():
    frames = pan(list(range(24)))
    frames[:12] = [np.zeros_like(frames[0])] * 12
    m = measure(frames)
    assert m["black"] == pytest.approx(0.5)
    assert quality_problem(m, QualityGates())["reason"] == "black"


def test_letterbox_bars_are_measured():
    frames = pan(list(range(24)))
    for f in frames:
        f[:12], f[-12:], f[:, :8] = 0, 0, 0  # top and bottom 12 of 96 rows, left 8 of 128 columns
    bars = measure(frames)["letterbox"]
    assert bars["top"] == pytest.approx(12 / 96) and bars["bottom"] == pytest.approx(12 / 96)
    assert bars["left"] == pytest.approx(8 / 128) and bars["right"] == 0
    assert bars["lost"] == pytest.approx(1 - (72 / 96) * (120 / 128))


def test_blur_lowers_sharpness():
    import cv2

    frames = pan(list(range(24)))
    sharp, blurred = measure(frames), measure([cv2.GaussianBlur(f, (0, 0), 3) for f in frames])
    assert blurred["sharpness"] < sharp["sharpness"] / 5


def test_scene_hashes_line_up_by_relative_time():
    signals = FrameSignals(AnalysisOptions(width=WIDTH, sample_fps=FPS), FPS)
    for frame in pan(list(range(0, 96, 2))):
        signals.feed(frame)
    hashes = scene_hashes(signals, 0, 48, 8)
    assert len(hashes) == 8 and hashes[0] == signals.hashes[0] and hashes[-1] == signals.hashes[47]
    assert scene_hashes(signals, 100, 120, 8) == []
