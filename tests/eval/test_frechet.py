"""Fréchet distance against closed forms, and the feature extractors."""

import numpy as np
import pytest
import scipy.linalg
import torch

from kinema.eval.frechet import (
    I3DFeatures,
    StatsFeatures,
    feature_statistics,
    frechet_distance,
    set_distance,
)


def random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.normal(size=(dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def test_one_dimensional_gaussians():
    # W2² between N(m1, s1²) and N(m2, s2²) is (m1 − m2)² + (s1 − s2)².
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]]))
    assert value == pytest.approx(3.0**2 + (2.0 - 3.0) ** 2)


def test_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    assert frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(expected)


def test_general_gaussians_match_the_sqrtm_formula():
    rng = np.random.default_rng(1)
    for dim in (2, 8, 32):
        mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
        s1, s2 = random_covariance(rng, dim), random_covariance(rng, dim)
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_identical_gaussians_are_at_distance_zero_even_when_singular():
    rng = np.random.default_rng(2)
    low_rank = rng.normal(size=(6, 2))
    sigma = low_rank @ low_rank.T
    assert frechet_distance(np.zeros(6), sigma, np.zeros(6), sigma) == pytest.approx(0.0, abs=1e-9)


def test_samples_converge_to_the_closed_form():
    rng = np.random.default_rng(3)
    a = rng.normal([0.0, 0.0], [1.0, 2.0], size=(50_000, 2))
    b = rng.normal([1.0, 0.0], [1.0, 1.0], size=(50_000, 2))
    assert set_distance(a, b) == pytest.approx(1.0 + 1.0, rel=0.02)


def test_feature_statistics_needs_two_samples():
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 4)))


def moving_square(step: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    x, y = rng.integers(2, 10, size=2)
    for t in range(8):
        frames[t, y : y + 8, x + step * t : x + step * t + 8] = (255, 40, 40)
    return frames


def test_stats_features_separate_still_from_moving_sets():
    extract = StatsFeatures()
    still = np.array([extract(moving_square(0, s)) for s in range(12)])
    moving = np.array([extract(moving_square(2, s)) for s in range(12)])
    moving_again = np.array([extract(moving_square(2, s)) for s in range(12, 24)])
    assert still.shape == (12, 24) and np.isfinite(still).all()
    assert set_distance(moving, moving_again) < set_distance(still, moving) / 4


class EchoI3D(torch.nn.Module):
    """Stands in for the real network: reports what it was given, to check the calling convention."""

    def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
        flags = torch.tensor([float(rescale), float(resize), float(return_features)])
        shape = torch.tensor([float(s) for s in x.shape])
        return torch.cat([shape, torch.stack([x.min(), x.max()]), flags])[None]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_i3d_features_load_torchscript_and_follow_stylegan_v_convention(tmp_path):
    weights = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(EchoI3D()).save(str(weights))
    frames = np.zeros((20, 48, 64, 3), np.uint8)
    frames[:, :, 32:] = 255
    features = I3DFeatures(weights)(frames)
    assert features.tolist() == [1, 3, 16, 224, 224, -1.0, 1.0, 0.0, 0.0, 1.0]


def test_i3d_features_need_the_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="I3D weights not found"):
        I3DFeatures(tmp_path / "missing.pt")
