"""The bundled shapes pipeline: shipped in fp16 within budget, run by `kinema generate` by default, on prompt.

These run the real trained weights. Sampling is seeded, so each video is the same on every run; the
checks still leave room for a video or two to be judged differently on another CPU's arithmetic.
"""

import subprocess
import sys

import numpy as np
import pytest

from kinema.data.shapes import ShapesConfig, make_clip
from kinema.eval.checkers import accuracy, check_video, expected_from_caption
from kinema.generate.pipeline import BUNDLED, Pipeline
from kinema.io import read_video, write_video
from tests.conftest import assert_shipped_in_fp16

PROMPTS = [
    "a red circle moving right",
    "a blue square moving up",
    "a green triangle moving left",
    "a yellow circle moving down",
    "a white square moving right",
    "a purple triangle moving up",
    "an orange circle moving left",
    "a cyan square moving down",
]


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline.from_pretrained()


def test_bundled_weights_are_fp16_and_within_budget():
    assert_shipped_in_fp16(BUNDLED)


def test_generate_uses_the_bundled_model_by_default(tmp_path):
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "kinema", "generate", PROMPTS[0], "-o", str(out), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    frames, fps = read_video(out)
    assert frames.shape == (17, 64, 64, 3) and fps == 8.0


def test_bundled_model_draws_the_colors_and_count_it_is_asked(pipeline):
    checks = [
        check_video(pipeline.generate(p, seed=i), expected_from_caption(p)) for i, p in enumerate(PROMPTS)
    ]
    scores = accuracy(checks)
    # Measured 2026-11-22: color 8/8, count 8/8, shape 7/8. Motion (1/8) is not good yet, so it is
    # reported in docs/MODEL_CARD.md rather than held here.
    assert scores["color"]["correct"] >= 7, scores
    assert scores["count"]["correct"] >= 7, scores
    assert scores["shape"]["correct"] >= 6, scores


def test_bundled_model_continues_a_given_first_frame(pipeline, tmp_path):
    clip = make_clip(ShapesConfig(split="test"), 3, seed=12345)
    first = clip.frames[0]
    frames = pipeline.generate(clip.caption, image=first, seed=0)
    unconditioned = pipeline.generate(clip.caption, seed=0)
    error = np.abs(frames[0].astype(float) - first.astype(float)).mean()
    baseline = np.abs(unconditioned[0].astype(float) - first.astype(float)).mean()
    # Measured 4.4 against 20.3 without the frame (2026-11-22).
    assert error < 8 and error < 0.5 * baseline, (error, baseline)
    write_video(tmp_path / "i2v.mp4", frames, 8.0)


@pytest.mark.cuda
def test_bundled_model_on_cuda_draws_what_it_draws_on_the_cpu(pipeline):
    cuda = Pipeline.from_pretrained(device="cuda")
    videos = [cuda.generate(p, seed=i) for i, p in enumerate(PROMPTS)]
    scores = accuracy(
        [check_video(v, expected_from_caption(p)) for v, p in zip(videos, PROMPTS, strict=True)]
    )
    assert scores["color"]["correct"] >= 7, scores
    assert scores["count"]["correct"] >= 7, scores
    # TF32 convolutions on the GPU move a pixel here and there; the video is the same.
    difference = np.abs(videos[0].astype(float) - pipeline.generate(PROMPTS[0], seed=0).astype(float))
    assert difference.mean() < 1.0, difference.mean()
