"""Stage 5: a scene re-encoded to the target fps, size and codec, bars cropped away."""

import numpy as np
import pytest

from kinema.data.curate.normalize import normalize_scene
from kinema.data.curate.recipe import NormalizeOptions
from kinema.io.video import probe, read_video

NO_BARS = {"top": 0.0, "bottom": 0.0, "left": 0.0, "right": 0.0}


def test_scene_is_cut_resized_and_reencoded(corpus, tmp_path):
    out = tmp_path / "clip.mp4"
    options = NormalizeOptions(fps=10.0, width=128, height=96)
    video = normalize_scene(corpus.root / "bikes.mp4", 1.2, 3.04, NO_BARS, options, out)  # scene 1 of bikes
    info = probe(out)
    assert video == {"fps": 10.0, "num_frames": 18, "width": 128, "height": 96}
    assert (info.codec, info.width, info.height, info.fps, info.num_frames) == ("h264", 128, 96, 10.0, 18)
    first, _ = read_video(out, num_frames=1)
    source, _ = read_video(corpus.root / "bikes.mp4", num_frames=1, fps=25.0, start=1.2)
    # 640x272 covers 128x96 at scale 96/272; the centre crop of the source frame, downscaled.
    import cv2

    scale = 96 / 272
    resized = cv2.resize(source[0], (round(640 * scale + 0.5), 96), interpolation=cv2.INTER_AREA)
    x = (resized.shape[1] - 128) // 2
    # The centre, give or take the one pixel a 4:2:0 crop may move to land on an even column.
    errors = [np.abs(first[0].astype(float) - resized[:, c : c + 128]).mean() for c in (x - 1, x, x + 1)]
    assert min(errors) < 6, errors


def test_max_seconds_caps_a_long_scene(corpus, tmp_path):
    options = NormalizeOptions(fps=5.0, width=64, height=64, max_seconds=2.0)
    video = normalize_scene(corpus.root / "bikes.mp4", 0.0, 10.0, NO_BARS, options, tmp_path / "c.mp4")
    assert video["num_frames"] == 10 and probe(tmp_path / "c.mp4").num_frames == 10


def test_bad_size_is_refused():
    with pytest.raises(ValueError, match="even"):
        NormalizeOptions(width=101)


def test_letterbox_bars_are_cropped_away(tmp_path):
    # A 4:3 picture with black bars above and below: after cropping, no black rows remain.
    from kinema.io.video import write_video

    rng = np.random.default_rng(0)
    frames = np.zeros((20, 240, 320, 3), np.uint8)
    frames[:, 30:210] = np.kron(
        rng.integers(60, 255, (20, 45, 80, 3), dtype=np.uint8), np.ones((1, 4, 4, 1), np.uint8)
    )
    source = write_video(tmp_path / "boxed.mp4", frames, 10.0)
    bars = {"top": 30 / 240, "bottom": 30 / 240, "left": 0.0, "right": 0.0}
    options = NormalizeOptions(fps=10.0, width=160, height=90)
    normalize_scene(source, 0.0, 2.0, bars, options, tmp_path / "out.mp4")
    clip, _ = read_video(tmp_path / "out.mp4")
    rows = clip.mean(axis=(0, 2, 3))
    assert clip.shape == (20, 90, 160, 3) and rows.min() > 40, rows.round()


def test_size_buckets_follow_each_scene_aspect(corpus, tmp_path):
    options = NormalizeOptions(fps=5.0, buckets=[[256, 144], [192, 192], [144, 256]])
    assert [options.size_for(a) for a in (2.35, 1.0, 0.5)] == [(256, 144), (192, 192), (144, 256)]
    wide = normalize_scene(corpus.root / "bikes.mp4", 0.0, 1.0, NO_BARS, options, tmp_path / "wide.mp4")
    from kinema.io.video import write_video

    tall = write_video(tmp_path / "tall.mp4", np.full((10, 240, 120, 3), 128, np.uint8), 10.0)
    portrait = normalize_scene(tall, 0.0, 1.0, NO_BARS, options, tmp_path / "portrait.mp4")
    assert (wide["width"], wide["height"], portrait["width"], portrait["height"]) == (256, 144, 144, 256)
    assert (probe(tmp_path / "portrait.mp4").width, probe(tmp_path / "portrait.mp4").height) == (144, 256)
    with pytest.raises(ValueError, match="even"):
        NormalizeOptions(buckets=[[255, 144]])
