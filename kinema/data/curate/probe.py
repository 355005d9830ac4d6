"""Stage 1: what a file is (PyAV), and the hard gates on it. Unreadable files get a reason, not a crash."""

from __future__ import annotations

import os

from kinema.data.curate.recipe import ProbeGates
from kinema.io.video import VideoError, probe


def probe_file(path: str | os.PathLike) -> tuple[dict | None, dict | None]:
    """(the file's facts, None), or (None, a rejection) when it is empty, not a video, truncated or corrupt."""
    try:
        info = probe(path).to_dict()
    except VideoError as e:
        return None, rejection("probe", _unreadable_code(e.reason), e.reason)
    info["bitrate"] = os.path.getsize(path) * 8 / info["duration"] if info["duration"] > 0 else 0.0
    return info, None


def probe_problem(info: dict, gates: ProbeGates) -> dict | None:
    """The first hard gate a probed file fails, as a rejection, or None."""
    short, long = sorted((info["width"], info["height"]))
    size = f"{info['width']}x{info['height']}"
    if short < gates.min_side:
        return rejection("probe", "too_small", f"{size}: shorter side below {gates.min_side}")
    if long > gates.max_side:
        return rejection("probe", "too_large", f"{size}: longer side above {gates.max_side}")
    if info["duration"] < gates.min_seconds:
        return rejection("probe", "too_short", f"{info['duration']:.2f} s < {gates.min_seconds} s")
    if info["duration"] > gates.max_seconds:
        return rejection("probe", "too_long", f"{info['duration']:.0f} s > {gates.max_seconds:.0f} s")
    return None


def rejection(stage: str, reason: str, detail: str) -> dict:
    """A decision record: the stage that rejected, a short reason code, and the specifics."""
    return {"stage": stage, "reason": reason, "detail": detail}


def _unreadable_code(reason: str) -> str:
    """A reason code for a VideoError's message."""
    if reason.startswith("file is empty"):
        return "empty"
    if reason.startswith(("not a video", "no video stream", "unsupported codec", "not a file")):
        return "not_video"
    if reason.startswith("truncated"):
        return "truncated"
    return "corrupt"
