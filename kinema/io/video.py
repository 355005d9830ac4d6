"""Video files in and out with PyAV: probe, decode with frame sampling, write mp4, GIF and PNG grids.

At this edge, video is uint8 `(T, H, W, 3)` RGB plus an fps.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from kinema.errors import KinemaError
from kinema.io.atomic import atomic_path

# Sampled frames further apart than this are reached by seeking, not by decoding through the gap.
SEEK_GAP_SECONDS = 2.0
# 4:2:0 pixel formats whose planes `iter_frames` scales before converting colour.
I420_FORMATS = ("yuv420p", "yuvj420p")
# Packets demuxed by `probe` to decide whether the frame rate is variable.
VFR_PROBE_PACKETS = 300


class VideoError(KinemaError):
    """A video that can't be read, with the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a video file."""

    path: str
    container: str
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    rotation: int
    has_audio: bool
    vfr: bool

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's container, codec, size, fps, frame count, duration, rotation and audio."""
    with _open(path) as container:
        stream = container.streams.video[0]
        first = next(_decoded_frames(container, stream, path), None)
        if first is None:
            raise VideoError(path, "no decodable video frames")
        fps = _stream_fps(stream, path)
        duration = _duration(container, stream)
        num_frames, times = stream.frames, None
        if not num_frames:
            times = _packet_times(container, stream)
            num_frames = len(times)
            if duration and times.size and times[-1] < duration - 2.5 / fps:
                raise VideoError(
                    path, f"truncated: packets stop at {times[-1]:.3f} s of a {duration:.3f} s video"
                )
        duration = duration or num_frames / fps
        width, height = (
            (stream.height, stream.width) if first.rotation % 180 else (stream.width, stream.height)
        )
        return VideoInfo(
            path=str(path),
            container=container.format.name,
            codec=stream.codec_context.name,
            width=width,
            height=height,
            fps=fps,
            num_frames=num_frames,
            duration=duration,
            rotation=int(first.rotation) % 360,
            has_audio=bool(container.streams.audio),
            vfr=_is_vfr(
                times[:VFR_PROBE_PACKETS]
                if times is not None
                else _packet_times(container, stream, VFR_PROBE_PACKETS)
            ),
        )


def read_video(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    start: float = 0.0,
    end: float | None = None,
    autorotate: bool = True,
) -> tuple[np.ndarray, float]:
    """Decode frames as uint8 (T, H, W, 3) plus their fps.

    With neither `num_frames` nor `fps`, every frame in [start, end) at the native rate.
    With `fps`, frames resampled to that rate; with `num_frames`, that many evenly spaced
    frames over [start, end]; with both, `num_frames` consecutive frames at `fps` from `start`.
    Far-apart frames are reached by seeking, so a short sample of a long file stays cheap.
    """
    _check_sampling(num_frames, fps, start, end)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        native_fps = _stream_fps(stream, path)
        duration = _duration(container, stream) or (stream.frames / native_fps if stream.frames else None)
        if num_frames is None and fps is None:
            frames = _all_frames(container, stream, path, start, end)
            out_fps = native_fps
        else:
            targets, out_fps = _target_times(native_fps, duration, num_frames, fps, start, end, path)
            frames = list(_frames_at(container, stream, targets, 0.5 / native_fps, path))
            # The last frame stays on screen for one frame interval, so it covers targets up to then.
            if frames:
                shown_until = _frame_time(frames[-1], stream, path) + 1 / native_fps
                frames += [frames[-1]] * sum(1 for t in targets[len(frames) :] if t < shown_until - 1e-6)
            if len(frames) < len(targets):
                raise VideoError(path, _short_reason(targets[len(frames)], duration))
    if not frames:
        raise VideoError(path, f"no frames in the range [{start}, {end}) s")
    arrays = _to_arrays(frames, autorotate)
    return np.stack(arrays), out_fps


def iter_frames(
    path: str | os.PathLike, *, max_width: int | None = None, format: str = "rgb24"
) -> Iterator[np.ndarray]:
    """Decode every frame in order, one at a time, as uint8 (H, W, 3), rotated for display.

    With `max_width`, wider frames are area-scaled to that width, the height following the aspect
    ratio and rounded to even; narrower ones are left as they are. This is the fast path for
    measuring footage: 4:2:0 frames are scaled plane by plane before any colour conversion.
    """
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in _decoded_frames(container, stream, path):
            scale = max_width / frame.width if max_width and frame.width > max_width else 1.0
            width, height = round(frame.width * scale / 2) * 2, round(frame.height * scale / 2) * 2
            even = frame.width % 2 == 0 and frame.height % 2 == 0
            if scale < 1 and even and frame.format.name in I420_FORMATS and format in ("rgb24", "bgr24"):
                array = _scaled_i420(frame, width, height, format)
            else:
                array = frame.reformat(width, height, format, interpolation="AREA").to_ndarray()
            yield _for_display(array, frame.rotation)


def _scaled_i420(frame: av.VideoFrame, width: int, height: int, format: str) -> np.ndarray:
    """Area-scale a 4:2:0 frame's planes, then convert the small frame (BT.601) to RGB or BGR.

    Scaling first makes the colour conversion cheap; for measuring footage (not for training
    pixels) the fixed BT.601 limited-range matrix is close enough.
    """
    small = scale_i420(frame.to_ndarray(format="yuv420p"), width, height)
    return cv2.cvtColor(small, cv2.COLOR_YUV2RGB_I420 if format == "rgb24" else cv2.COLOR_YUV2BGR_I420)


def iter_frames_at(
    path: str | os.PathLike,
    times: Sequence[float],
    *,
    size: tuple[int, int] | None = None,
    pixel_format: str = "rgb24",
) -> Iterator[np.ndarray]:
    """The frame on screen at each of the sorted `times` (seconds), one at a time, rotated for display.

    `pixel_format` "rgb24" gives (H, W, 3); "yuv420p" gives the planes as (H * 3 / 2, W), which a
    4:2:0 source yields without any colour conversion. With `size` (display width, height) frames
    are area-scaled as they are decoded. Decoding runs forward from one seek, so a short range of a
    long file stays cheap and memory stays flat.
    """
    if pixel_format not in ("rgb24", "yuv420p"):
        raise ValueError(f"pixel_format must be rgb24 or yuv420p, got {pixel_format}")
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tolerance = 0.5 / _stream_fps(stream, path)
        count, last, array = 0, None, None
        for frame in _frames_at(container, stream, list(times), tolerance, path):
            if frame is not last:
                array, last = _converted(frame, size, pixel_format), frame
            count += 1
            yield array
        if count < len(times):
            raise VideoError(path, f"frames stop before {times[count]:.3f} s")


def _converted(frame: av.VideoFrame, size: tuple[int, int] | None, pixel_format: str) -> np.ndarray:
    """One decoded frame, scaled to the display `size` and rotated, in `pixel_format`."""
    turned = frame.rotation % 180 != 0
    width, height = (size[::-1] if turned else size) if size else (frame.width, frame.height)
    plain_i420 = frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0
    if pixel_format == "yuv420p" and plain_i420 and not frame.rotation % 360:
        return scale_i420(frame.to_ndarray(format="yuv420p"), width, height)
    array = _for_display(
        frame.reformat(width, height, "rgb24", interpolation="AREA").to_ndarray(), frame.rotation
    )
    return cv2.cvtColor(array, cv2.COLOR_RGB2YUV_I420) if pixel_format == "yuv420p" else array


def i420_planes(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of Y (H, W), U and V (H/2, W/2) in a (H * 3 / 2, W) yuv420p array."""
    height, width = planes.shape[0] * 2 // 3, planes.shape[1]
    u, v = planes[height:].reshape(2, height // 2, width // 2)
    return planes[:height], u, v


def i420_join(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Planes back into one (H * 3 / 2, W) yuv420p array."""
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(y.shape[0] * 3 // 2, y.shape[1])


def crop_i420(planes: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
    """The box at even (left, top) of even size, cut out of a yuv420p array."""
    if left % 2 or top % 2 or width % 2 or height % 2:
        raise ValueError(f"a 4:2:0 crop needs even numbers, got {left},{top} {width}x{height}")
    y, u, v = i420_planes(planes)
    box = (slice(top // 2, (top + height) // 2), slice(left // 2, (left + width) // 2))
    return i420_join(y[top : top + height, left : left + width], u[box], v[box])


def scale_i420(planes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-scale (or, growing, bicubic-scale) each plane of a yuv420p array with OpenCV."""
    y, u, v = i420_planes(planes)
    if y.shape == (height, width):
        return planes
    how = cv2.INTER_AREA if width * height < y.size else cv2.INTER_CUBIC
    half = (width // 2, height // 2)
    return i420_join(
        cv2.resize(y, (width, height), interpolation=how),
        *(cv2.resize(c, half, interpolation=how) for c in (u, v)),
    )


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, *, crf: int = 18, preset: str = "medium"
) -> Path:
    """Write uint8 (T, H, W, 3) frames as an H.264 yuv420p mp4, atomically."""
    frames = check_frames(frames)
    _, height, width, _ = frames.shape
    with video_writer(path, width, height, fps, crf=crf, preset=preset) as write:
        write(frames)
    return Path(path)


@contextlib.contextmanager
def video_writer(
    path: str | os.PathLike,
    width: int,
    height: int,
    fps: float,
    *,
    crf: int = 18,
    preset: str = "medium",
    pixel_format: str = "rgb24",
) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield `write(frames)` for batches of an H.264 yuv420p mp4; the file appears, whole, on exit.

    Frames are uint8 (T, H, W, 3) RGB, or with `pixel_format="yuv420p"` (T, H * 3 / 2, W) planes.
    """
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs an even width and height, got {width}x{height}")
    if not 0 <= crf <= 51:
        raise ValueError(f"crf must be in 0..51, got {crf}")
    shape = (height, width, 3) if pixel_format == "rgb24" else (height * 3 // 2, width)
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=_fps_fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}

        def write(frames: np.ndarray) -> None:
            frames = check_frames(frames) if pixel_format == "rgb24" else np.asarray(frames, dtype=np.uint8)
            if frames.shape[1:] != shape:
                raise ValueError(f"frames are {frames.shape[1:]}, the video needs {shape} ({pixel_format})")
            for array in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format=pixel_format)))

        yield write
        out.mux(stream.encode(None))


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Write frames as a looping GIF, atomically."""
    frames = check_frames(frames)
    _fps_fraction(fps)
    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
    return Path(path)


def contact_sheet(frames: np.ndarray, *, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile frames row by row into one uint8 (H, W, 3) image, with `pad` black pixels between."""
    frames = check_frames(frames)
    count, height, width, _ = frames.shape
    cols = math.ceil(math.sqrt(count)) if cols is None else cols
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    rows = math.ceil(count / cols)
    sheet = np.zeros((rows * (height + pad) + pad, cols * (width + pad) + pad, 3), np.uint8)
    for i, frame in enumerate(frames):
        y, x = pad + (i // cols) * (height + pad), pad + (i % cols) * (width + pad)
        sheet[y : y + height, x : x + width] = frame
    return sheet


def write_contact_sheet(path: str | os.PathLike, frames: np.ndarray, *, cols: int | None = None) -> Path:
    """Write a PNG grid of the frames, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(contact_sheet(frames, cols=cols)).save(tmp, format="PNG")
    return Path(path)


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Return frames as a contiguous uint8 (T, H, W, 3) array, or raise ValueError naming the problem."""
    if not isinstance(frames, np.ndarray):
        raise ValueError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(
            f"frames must be uint8 (T, H, W, 3) with T, H, W > 0, got {frames.dtype} {frames.shape}"
        )
    return np.ascontiguousarray(frames)


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a file for decoding, turning every way it can fail into a VideoError."""
    p = Path(path)
    if not p.exists():
        raise VideoError(path, "file not found")
    if not p.is_file():
        raise VideoError(path, "not a file")
    if p.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    try:
        container = av.open(str(p), metadata_errors="ignore")
    except av.FFmpegError as e:
        raise VideoError(path, _open_failure(p, e)) from None
    if not container.streams.video:
        container.close()
        raise VideoError(path, "no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None or stream.codec_context.name in ("none", ""):
        container.close()
        raise VideoError(path, "unsupported codec: no decoder for the video stream")
    missing = _bytes_missing(stream, p.stat().st_size)
    if missing:
        container.close()
        raise VideoError(path, f"truncated: the index points {missing} bytes past the end of the file")
    return container


def _bytes_missing(stream: av.VideoStream, file_size: int) -> int:
    """How far the container's index reaches past the end of the file (0 when whole or unindexed)."""
    entries = stream.index_entries
    if not entries:
        return 0
    last = max(entries, key=lambda e: e.pos)
    return max(0, last.pos + last.size - file_size)


def _open_failure(path: Path, error: av.FFmpegError) -> str:
    """Explain why FFmpeg could not open a non-empty file."""
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":
        return f"truncated or damaged MP4: the index (moov) is missing ({error.strerror})"
    return f"not a video file ({error.strerror})"


def _decoded_frames(
    container: av.container.InputContainer, stream: av.VideoStream, path: str | os.PathLike
) -> Iterator[av.VideoFrame]:
    """Decode the stream from the current position; a decoding failure becomes a VideoError."""
    count = 0
    try:
        for frame in container.decode(stream):
            count += 1
            yield frame
    except av.FFmpegError as e:
        raise VideoError(
            path, f"truncated or corrupt: decoding failed after {count} frames ({e.strerror})"
        ) from None


def _frame_time(frame: av.VideoFrame, stream: av.VideoStream, path) -> float:
    """A frame's time in seconds from the start of the stream."""
    if frame.pts is None:
        raise VideoError(path, "frames carry no timestamps")
    return float((frame.pts - (stream.start_time or 0)) * stream.time_base)


def _all_frames(container, stream, path, start: float, end: float | None) -> list[av.VideoFrame]:
    """Every frame whose time lies in [start, end)."""
    if start > 0:
        _seek(container, stream, start)
    fps = _stream_fps(stream, path)
    tol, t = 0.5 / fps, -math.inf
    frames = []
    for frame in _decoded_frames(container, stream, path):
        t = _frame_time(frame, stream, path)
        if end is not None and t >= end - tol:
            return frames
        if t >= start - tol:
            frames.append(frame)
    # Threaded decoders can swallow the error at a cut-off packet, so check we reached the end.
    duration = _duration(container, stream)
    if duration is not None and t < duration - 1 / fps - 3 * tol:
        raise VideoError(
            path, f"truncated: decoding stopped at {max(t, 0):.3f} s of a {duration:.3f} s video"
        )
    return frames


def _frames_at(container, stream, targets: list[float], tol: float, path) -> Iterator[av.VideoFrame]:
    """Yield, for each target time, the first frame within `tol` of it or after it."""
    k, position, sought = 0, 0.0, -1

    def far(k: int) -> bool:
        # Seek at most once per target: when its keyframe lies far before it (a long GOP), decode on.
        return targets[k] - position > SEEK_GAP_SECONDS and sought != k

    while k < len(targets):
        if far(k):
            _seek(container, stream, targets[k])
            sought = k
        for frame in _decoded_frames(container, stream, path):
            position = _frame_time(frame, stream, path)
            while k < len(targets) and position >= targets[k] - tol:
                yield frame
                k += 1
            if k == len(targets) or far(k):
                break
        else:
            return


def _seek(container, stream, seconds: float) -> None:
    """Seek to the keyframe at or before `seconds`."""
    offset = int(seconds / stream.time_base) + (stream.start_time or 0)
    container.seek(offset, stream=stream, backward=True, any_frame=False)


def _target_times(
    native_fps: float,
    duration: float | None,
    num_frames: int | None,
    fps: float | None,
    start: float,
    end: float | None,
    path,
) -> tuple[list[float], float]:
    """The times to sample, and the fps the sampled frames play at."""
    if num_frames is not None and fps is not None:
        return [start + k / fps for k in range(num_frames)], fps
    if duration is None:
        raise VideoError(path, "unknown duration: can't sample frames evenly or by fps")
    stop = duration if end is None else min(end, duration)
    last = stop - 1 / native_fps
    if last < start - 1e-6:
        raise VideoError(path, f"no frames in the range [{start}, {end}) s (video is {duration:.3f} s)")
    if fps is not None:
        # Every target before `stop`, as ffmpeg's fps filter counts them.
        count = max(1, math.ceil((stop - start) * fps - 1e-6))
        return [start + k / fps for k in range(count)], fps
    times = np.linspace(start, last, num_frames).tolist()
    out_fps = native_fps if num_frames == 1 or last == start else (num_frames - 1) / (last - start)
    return times, out_fps


def _short_reason(missing_time: float, duration: float | None) -> str:
    """Why a sampled frame could not be found."""
    if duration is not None and missing_time < duration - 1e-3:
        return f"truncated: decoding stopped before {missing_time:.3f} s of a {duration:.3f} s video"
    length = "unknown length" if duration is None else f"{duration:.3f} s long"
    return f"too short: needs a frame at {missing_time:.3f} s but the video is {length}"


def _to_arrays(frames: list[av.VideoFrame], autorotate: bool) -> list[np.ndarray]:
    """Convert frames to RGB arrays once each (a frame sampled twice is shared), rotated for display."""
    converted: dict[int, np.ndarray] = {}
    arrays = []
    for frame in frames:
        if id(frame) not in converted:
            array = frame.to_ndarray(format="rgb24")
            converted[id(frame)] = _for_display(array, frame.rotation) if autorotate else array
        arrays.append(converted[id(frame)])
    return arrays


def _for_display(array: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded (H, W, C) array turned by the stream's display rotation (degrees)."""
    if rotation % 360 == 0:
        return array
    return np.ascontiguousarray(np.rot90(array, k=round(rotation / 90)))


def _stream_fps(stream: av.VideoStream, path) -> float:
    """The stream's average frame rate."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise VideoError(path, "unknown frame rate")
    return float(rate)


def _duration(container, stream) -> float | None:
    """The stream's duration in seconds, or the container's, or None."""
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tagged = _parse_clock(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
    if tagged:
        return tagged
    if container.duration:
        return container.duration / av.time_base
    return None


def _parse_clock(text: str | None) -> float | None:
    """Seconds from a Matroska-style 'HH:MM:SS.fraction' tag, or None."""
    try:
        hours, minutes, seconds = (text or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _packet_times(container, stream, limit: int | None = None) -> np.ndarray:
    """Sorted presentation times (seconds) of the stream's packets, found by demuxing, not decoding."""
    container.seek(0)
    pts = []
    for packet in container.demux(stream):
        if packet.pts is not None and packet.size:
            pts.append(packet.pts)
            if limit is not None and len(pts) >= limit:
                break
    container.seek(0)
    return (np.sort(np.array(pts, dtype=np.int64)) - (stream.start_time or 0)) * float(stream.time_base)


def _is_vfr(times: np.ndarray) -> bool:
    """Whether the intervals between frame times vary by more than rounding."""
    deltas = np.diff(times)
    if len(deltas) < 2:
        return False
    return bool(deltas.max() - deltas.min() > 0.1 * np.median(deltas) + 1e-4)


def _fps_fraction(fps: float) -> Fraction:
    """A frame rate as the exact fraction encoders want; rejects non-positive or non-finite values."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    return Fraction(fps if isinstance(fps, Fraction) else float(fps)).limit_denominator(10_000)


def _check_sampling(num_frames, fps, start, end) -> None:
    """Reject sampling arguments that make no sense, naming the argument."""
    if num_frames is not None and (
        isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1
    ):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if fps is not None:
        _fps_fraction(fps)
    if start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    if end is not None and end <= start:
        raise ValueError(f"end must be after start, got start={start}, end={end}")
    if num_frames is not None and fps is not None and end is not None:
        raise ValueError(
            "give at most two of num_frames, fps and end: with both num_frames and fps, end is implied"
        )
