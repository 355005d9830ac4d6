"""Per-video metrics against hand-computed values on constructed videos."""

import itertools
import math

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from kinema.eval import metrics


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random grey texture that optical flow can lock on to."""
    noise = np.random.default_rng(seed).random((height, width)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def shifting(dx: int, dy: int, frames: int = 8, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A texture panning by (dx, dy) pixels per frame: content moves right by dx and down by dy."""
    height, width = size
    margin = 4 * max(abs(dx), abs(dy)) * frames
    base = texture(height + 2 * margin, width + 2 * margin)
    crops = [
        base[margin - dy * t : margin - dy * t + height, margin - dx * t : margin - dx * t + width]
        for t in range(frames)
    ]
    return np.repeat(np.stack(crops)[..., None], 3, axis=-1)


def still(frames: int = 9) -> np.ndarray:
    return np.repeat(shifting(0, 0, frames=1), frames, axis=0)


def test_ssim_equals_scikit_image_gaussian_ssim():
    rng = np.random.default_rng(1)
    for a, b in [
        (texture(48, 64), cv2.GaussianBlur(texture(48, 64), (5, 5), 1.0)),
        (rng.integers(0, 256, (32, 40), dtype=np.uint8), rng.integers(0, 256, (32, 40), dtype=np.uint8)),
        (texture(20, 20, seed=2), np.clip(texture(20, 20, seed=2).astype(int) + 40, 0, 255).astype(np.uint8)),
    ]:
        expected = structural_similarity(
            a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
        )
        assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_ssim_of_two_flat_images_has_the_closed_form():
    a, b = np.full((16, 16), 100, np.uint8), np.full((16, 16), 160, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(a, b) == pytest.approx((2 * 100 * 160 + c1) / (100**2 + 160**2 + c1))
    assert metrics.ssim(a, a) == 1.0


def test_still_video_scores_as_still():
    values = metrics.video_metrics(still(), fps=8)
    assert values["metrics"]["temporal_flickering"] == 1.0
    assert values["metrics"]["temporal_consistency"] == 1.0
    assert values["metrics"]["motion"] == pytest.approx(0.0, abs=1e-12)
    assert values["metrics"]["mean_flow"] < 0.01
    assert values["metrics"]["dynamic_degree"] == 0.0
    assert (
        values["labels"]["motion"] == "static" and values["labels"]["temporal_consistency"] == "very smooth"
    )


def test_temporal_consistency_averages_every_pair_not_just_the_first_nine():
    frames = still(17)
    frames[16] = 255 - frames[16]  # only the last pair changes
    gray = metrics.to_gray(frames)
    expected = (15 * 1.0 + metrics.ssim(gray[15], gray[16])) / 16
    assert metrics.temporal_consistency(frames) == pytest.approx(expected)
    assert expected < 0.99


def test_motion_compares_only_the_first_and_last_frames():
    frames = still(5)
    frames[2] = 0
    assert metrics.motion_score(frames) == pytest.approx(0.0, abs=1e-12)
    frames[-1] = 255 - frames[0]
    gray = metrics.to_gray(frames)
    assert metrics.motion_score(frames) == pytest.approx(1.0 - metrics.ssim(gray[0], gray[-1]))


def test_flickering_follows_vbench_formula():
    steps = np.stack([np.full((16, 16, 3), 10 * t, np.uint8) for t in range(6)])
    assert metrics.temporal_flickering(steps) == pytest.approx((255 - 10) / 255)
    strobe = np.stack([np.full((16, 16, 3), 255 * (t % 2), np.uint8) for t in range(6)])
    assert metrics.temporal_flickering(strobe) == 0.0


def test_laplacian_variance_of_a_checkerboard_is_1020_squared():
    board = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert metrics.laplacian_variance(board) == pytest.approx(1020.0**2)


def test_sharpness_reports_the_middle_frame_and_the_mean():
    sharp = np.repeat((np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None], 3, axis=-1)
    frames = np.stack([np.full_like(sharp, 128), sharp, np.full_like(sharp, 128)])
    values = metrics.sharpness(frames)
    assert values["sharpness_middle"] == pytest.approx(1020.0**2, rel=1e-3)
    assert values["sharpness_mean"] == pytest.approx(1020.0**2 / 3, rel=1e-3)


@pytest.mark.parametrize(("dx", "dy"), [(2, 1), (-3, 0), (0, 2)])
def test_farneback_recovers_a_known_shift(dx, dy):
    flow = metrics.optical_flow(shifting(dx, dy))
    interior = flow[:, 16:-16, 16:-16].reshape(-1, 2)
    assert np.median(interior, axis=0) == pytest.approx([dx, dy], abs=0.1)
    assert metrics.flow_metrics(shifting(dx, dy), fps=8)["mean_flow"] == pytest.approx(
        math.hypot(dx, dy), rel=0.1
    )


def test_dynamic_degree_uses_the_size_relative_threshold():
    # 6 px at 256 px is 2.25 px at 96 px: 1 px/frame is static, 3 px/frame is dynamic.
    assert metrics.flow_metrics(shifting(1, 0), fps=8)["dynamic_degree"] == 0.0
    assert metrics.flow_metrics(shifting(3, 0), fps=8)["dynamic_degree"] == 1.0


def test_dynamic_degree_resamples_to_about_8_fps():
    # At 24 fps every third frame is kept, so 1 px per frame becomes 3 px per sampled pair.
    frames = shifting(1, 0, frames=16)
    assert metrics.flow_metrics(frames, fps=8)["dynamic_degree"] == 0.0
    assert metrics.flow_metrics(frames, fps=24)["dynamic_degree"] == 1.0
    assert metrics.flow_metrics(frames, fps=24)["mean_flow"] == pytest.approx(1.0, rel=0.1)


def test_psnr_per_frame_matches_the_definition():
    reference = np.full((4, 16, 16, 3), 128, np.uint8)
    frames = reference.copy()
    frames[1] += 1
    frames[2] += 16
    frames[3, :8] += 10  # half the pixels off by 10: MSE 50
    psnr = metrics.psnr_per_frame(frames, reference)
    assert psnr[0] == metrics.MAX_PSNR
    assert psnr[1] == pytest.approx(20 * math.log10(255))
    assert psnr[2] == pytest.approx(20 * math.log10(255 / 16))
    assert psnr[3] == pytest.approx(10 * math.log10(255**2 / 50))


def test_ssim_per_frame_falls_as_frames_drift_from_the_reference():
    truth = shifting(1, 0, frames=6)
    drifting = np.stack([truth[0]] * 6)  # a frozen prediction drifts further from the truth every frame
    ssim = metrics.ssim_per_frame(drifting, truth)
    assert ssim[0] == 1.0 and all(b < a for a, b in itertools.pairwise(ssim))


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        ("temporal_consistency", 0.96, "very smooth"),
        ("temporal_consistency", 0.95, "good"),
        ("temporal_consistency", 0.8, "moderate"),
        ("temporal_consistency", 0.5, "low"),
        ("sharpness_mean", 501, "very sharp"),
        ("sharpness_mean", 150, "moderate"),
        ("sharpness_mean", 100, "soft"),
        ("motion", 0.05, "static"),
        ("motion", 0.1, "subtle"),
        ("motion", 0.4, "moderate"),
        ("motion", 0.5, "dynamic"),
        ("temporal_flickering", 0.9, None),
        ("motion", float("nan"), None),
    ],
)
def test_labels_follow_the_book_thresholds(metric, value, expected):
    assert metrics.label(metric, value) == expected


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 16, 16, 3), np.float32), "uint8"),
        (np.zeros((16, 16, 3), np.uint8), "uint8"),
        (np.zeros((1, 16, 16, 3), np.uint8), "at least 2 frames"),
    ],
)
def test_bad_frames_raise_one_clear_error(frames, message):
    with pytest.raises(ValueError, match=message):
        metrics.video_metrics(frames, fps=8)


def test_reference_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr_per_frame(still(3), still(4))
