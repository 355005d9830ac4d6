"""kinema.eval.reconstruction and `kinema reconstruct`: a VAE's round trip, scored on real pixels."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.eval.reconstruction import (
    file_clips,
    fit_clip,
    reconstruct,
    score_reconstructions,
    shapes_clips,
)
from kinema.io import read_video, write_video
from kinema.models.vae import CausalVAE, VAEConfig


@pytest.fixture(scope="module")
def vae() -> CausalVAE:
    torch.manual_seed(0)
    config = VAEConfig(
        latent_channels=4, base_channels=8, channel_multipliers=(1, 2, 2), spatial_downsample=4
    )
    return CausalVAE(config).eval()


def test_reconstruct_keeps_shape_and_dtype(vae):
    _, frames = next(shapes_clips(1, 32, 32, 9))
    recon = reconstruct(vae, frames)
    assert recon.shape == frames.shape == (9, 32, 32, 3) and recon.dtype == np.uint8
    assert not np.array_equal(recon, frames)  # an untrained VAE does not copy its input


def test_fit_clip_keeps_the_longest_valid_prefix(vae):
    frames = np.zeros((20, 40, 48, 3), np.uint8)
    assert fit_clip(frames, vae, 32, 16, 17).shape == (17, 16, 32, 3)
    assert fit_clip(frames[:12], vae, 32, 16, 17).shape == (9, 16, 32, 3)  # 1 + 4k frames at 4x time


def test_overall_psnr_is_over_all_pixels(vae):
    clips = list(shapes_clips(3, 32, 32, 5))
    scores = score_reconstructions(vae, clips, width=32, height=32, max_frames=5, progress=False)
    errors = [(reconstruct(vae, f).astype(float) - f.astype(float)) ** 2 for _, f in clips]
    expected = 10 * np.log10(255**2 / np.mean(np.concatenate([e.ravel() for e in errors])))
    assert scores["count"] == 3 and scores["clips"][0]["name"] == "shapes-test-0000"
    assert scores["psnr"] == pytest.approx(expected, abs=1e-9)
    assert 0 < scores["psnr"] < 25 and -1 <= scores["ssim"] <= 1


def test_file_clips_are_the_first_frames_at_the_native_rate(tmp_path):
    _, frames = next(shapes_clips(1, 32, 32, 17))
    path = write_video(tmp_path / "clip.mp4", frames, 8.0)
    (name, first), *_ = file_clips([path], 5)
    decoded, _ = read_video(path)
    assert name == str(path) and np.array_equal(first, decoded[:5])


def test_held_out_clips_are_the_test_split():
    clips = list(shapes_clips(2, 32, 32, 5))
    again = list(shapes_clips(2, 32, 32, 5))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(clips, again, strict=True))
    assert not np.array_equal(clips[0][1], clips[1][1])


def reconstruct_cli(*args, out: Path) -> subprocess.CompletedProcess:
    """`kinema reconstruct ARGS` at 32x32 and 9 frames, scores to `out`."""
    command = [sys.executable, "-m", "kinema", "reconstruct", *map(str, args)]
    return subprocess.run(
        [*command, "--size", "32", "--frames", "9", "--json", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_scores_files_and_shapes(vae, tmp_path):
    folder = vae.save_pretrained(tmp_path / "vae")
    _, frames = next(shapes_clips(1, 48, 48, 12))
    video = write_video(tmp_path / "clip.mp4", frames, 8.0)
    out = tmp_path / "scores.json"
    result = reconstruct_cli("--vae", folder, video, "--shapes", "2", out=out)
    assert result.returncode == 0, result.stderr
    assert "3 clips at 32x32: PSNR" in result.stdout and f"{video}: PSNR" in result.stdout
    scores = json.loads(out.read_text())
    assert scores["count"] == 3 and [r["frames"] for r in scores["clips"]] == [9, 9, 9]

    missing = subprocess.run(
        [sys.executable, "-m", "kinema", "reconstruct", "--vae", str(folder), str(tmp_path / "nope.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and missing.stderr.startswith("kinema: error: video not found")


def test_a_short_file_is_taken_whole_and_a_bad_one_is_skipped(vae, tmp_path):
    folder = vae.save_pretrained(tmp_path / "vae")
    _, frames = next(shapes_clips(1, 48, 48, 12))
    short = write_video(tmp_path / "short.mp4", frames[:5], 8.0)
    good = write_video(tmp_path / "good.mp4", frames, 8.0)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    assert [len(f) for _, f in file_clips([short, good], 9)] == [5, 9]
    out = tmp_path / "scores.json"
    result = reconstruct_cli("--vae", folder, short, broken, good, out=out)
    assert result.returncode == 0, result.stderr
    assert f"skipped {broken}: not a video file" in result.stderr
    assert [r["frames"] for r in json.loads(out.read_text())["clips"]] == [5, 9]
