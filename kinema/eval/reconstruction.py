"""How well a VAE gives back what it encodes: PSNR and SSIM of its round trip, per clip and overall.

Clips go through `encode(...).mean` and `decode` in memory, so the scores are the VAE's own error:
no video codec touches the reconstruction. Clips come from video files (resized and cropped to the
size asked for) or from the shapes world's held-out split, rendered exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kinema.data.dataset import resize_crop, to_frames, to_tensor
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.eval.metrics import MAX_PSNR, psnr_per_frame, ssim_per_frame
from kinema.io.video import VideoError, probe, read_video
from kinema.models.vae import VideoVAE

HELD_OUT_SEED = 12345  # the shapes seed of every held-out clip (training renders seed 0)


@torch.no_grad()
def reconstruct(vae: VideoVAE, frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) frames -> the VAE's reconstruction of them, same shape and dtype."""
    param = next(vae.parameters())
    video = to_tensor(frames).unsqueeze(0).to(param.device, param.dtype)
    recon = vae.decode(vae.encode(video).mean).clamp(-1, 1)
    return to_frames(recon[0].float().cpu())


def fit_clip(frames: np.ndarray, vae: VideoVAE, width: int, height: int, max_frames: int) -> np.ndarray:
    """Resize-crop to width x height and keep the longest 1 + t*k prefix of at most max_frames frames."""
    t = vae.temporal_downsample
    count = 1 + t * ((min(len(frames), max_frames) - 1) // t)
    return resize_crop(frames[:count], width, height)


def shapes_clips(count: int, width: int, height: int, frames: int) -> Iterator[tuple[str, np.ndarray]]:
    """The first `count` clips of the shapes world's held-out (test) split, as (name, frames)."""
    config = ShapesConfig(width=width, height=height, frames=frames, split="test")
    for index in range(count):
        yield f"shapes-test-{index:04d}", make_clip(config, index, seed=HELD_OUT_SEED).frames


def file_clips(
    paths: Iterable[str | Path], frames: int, skipped: list[str] | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """Up to the first `frames` frames of each video file, at its own rate, as (name, frames).

    A shorter file gives all it has. With a `skipped` list, an unreadable file is noted there
    (path and reason) and passed over, so one bad file does not stop a batch.
    """
    for path in paths:
        try:
            fps = probe(path).fps
            video, _ = read_video(path, fps=fps, end=frames / fps)
        except VideoError as e:
            if skipped is None:
                raise
            skipped.append(str(e))
            continue
        yield str(path), video[:frames]


def score_reconstructions(
    vae: VideoVAE,
    clips: Iterable[tuple[str, np.ndarray]],
    *,
    width: int,
    height: int,
    max_frames: int,
    progress: bool = True,
) -> dict:
    """PSNR / SSIM of the VAE's round trip per clip and overall; each PSNR is over all the pixels it covers.

    (A mean of per-frame PSNRs would let a few perfectly kept black frames hide bad ones.)
    """
    rows, squared_errors, pixels = [], 0.0, 0
    for name, frames in tqdm(clips, desc="reconstruct", unit="clip", disable=not progress):
        truth = fit_clip(frames, vae, width, height, max_frames)
        recon = reconstruct(vae, truth)
        error = float(np.square(truth.astype(np.float64) - recon.astype(np.float64)).sum())
        squared_errors, pixels = squared_errors + error, pixels + truth.size
        rows.append(
            {
                "name": name,
                "frames": len(truth),
                "psnr": _psnr(error / truth.size),
                "psnr_per_frame": psnr_per_frame(recon, truth),
                "ssim": float(np.mean(ssim_per_frame(recon, truth))),
            }
        )
    if not rows:
        raise ValueError("no clips to reconstruct")
    return {
        "count": len(rows),
        "psnr": _psnr(squared_errors / pixels),
        "psnr_clip_mean": float(np.mean([r["psnr"] for r in rows])),
        "ssim": float(np.mean([r["ssim"] for r in rows])),
        "clips": rows,
    }


def _psnr(mse: float) -> float:
    """PSNR in dB of 8-bit pixels with this mean squared error, capped at MAX_PSNR."""
    return MAX_PSNR if mse <= 0 else min(MAX_PSNR, float(10 * np.log10(255.0**2 / mse)))
