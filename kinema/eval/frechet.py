"""Fréchet distance between two sets of videos, over features from a pluggable extractor.

FVD is this distance over I3D features, and only over I3D features: a number computed with any
other network is not FVD and is not comparable with published FVDs. So `I3DFeatures` needs the
user's own copy of the standard TorchScript I3D (StyleGAN-V's `i3d_torchscript.pt`), and without
one the report says FVD is unavailable. `StatsFeatures` needs no weights; its distance tracks
differences in color, sharpness and motion between two sets, and is reported under its own name.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from kinema.eval.metrics import laplacian_variance, optical_flow, temporal_flickering, to_gray


class FeatureExtractor(Protocol):
    """Turns one video, uint8 (T, H, W, 3), into a 1-D feature vector."""

    name: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (N − 1 normalised) of an (N, D) feature matrix with N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need an (N, D) feature matrix with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """‖mu1 − mu2‖² + tr(S1 + S2 − 2 (S1 S2)^½) between two Gaussians.

    tr((S1 S2)^½) is computed as the sum of square roots of the eigenvalues of the symmetric
    S1^½ S2 S1^½, which has the same spectrum and never goes complex the way sqrtm(S1 S2) can.
    """
    root1 = _psd_sqrt(np.asarray(sigma1, dtype=np.float64))
    middle = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    difference = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    value = difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root
    return float(max(value, 0.0))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def set_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


class StatsFeatures:
    """A weight-free 24-number summary of a video's color, sharpness and motion."""

    name = "stats"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Per-channel mean and std, a grey histogram, log sharpness, flicker and a flow-speed histogram."""
        pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
        gray = to_gray(frames)
        grey_hist = np.histogram(gray, bins=8, range=(0, 256))[0] / gray.size
        sharp = np.log1p(np.mean([laplacian_variance(image) for image in gray]))
        speed = np.linalg.norm(optical_flow(frames), axis=-1) / min(frames.shape[1:3]) * 64.0
        speed_hist = np.histogram(np.clip(speed, 0, 7.99), bins=8, range=(0, 8))[0] / speed.size
        return np.concatenate(
            [pixels.mean(0), pixels.std(0), grey_hist, [sharp, temporal_flickering(frames)], speed_hist]
        )


class I3DFeatures:
    """Features of the standard FVD network, from a TorchScript I3D file the user supplies.

    The convention is StyleGAN-V's: 16 frames resized to 224×224, values in [-1, 1], called as
    `model(x, rescale=False, resize=False, return_features=True)` on (B, 3, T, H, W).
    """

    name = "i3d"
    frames = 16
    size = 224

    def __init__(self, weights: str | Path, device: str = "cpu") -> None:
        import torch  # only this extractor needs torch, so plain metrics stay light

        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"I3D weights not found: {path}")
        self.device = device
        with warnings.catch_warnings():  # the published I3D is TorchScript, whatever torch thinks of it
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location=device).eval()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """The I3D feature vector of one video, evenly sampled to 16 frames."""
        import torch

        index = np.linspace(0, len(frames) - 1, self.frames).round().astype(int)
        resized = np.stack(
            [cv2.resize(frames[i], (self.size, self.size), interpolation=cv2.INTER_AREA) for i in index]
        )
        video = torch.from_numpy(resized).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1.0)
        with torch.no_grad():
            features = self.model(video.to(self.device), rescale=False, resize=False, return_features=True)
        return features.reshape(-1).double().cpu().numpy()
