"""Stage 1: every way a file can be unreadable gets its own reason; the gates name the limit."""

import pytest

from kinema.data.curate.probe import probe_file, probe_problem
from kinema.data.curate.recipe import ProbeGates


@pytest.mark.parametrize(
    ("name", "reason"), [("empty.mp4", "empty"), ("truncated.mp4", "truncated"), ("notes.mp4", "not_video")]
)
def test_unreadable_files_are_rejected_with_a_reason(corpus, name, reason):
    info, rejected = probe_file(corpus.root / name)
    assert info is None
    assert (rejected["stage"], rejected["reason"]) == ("probe", reason)
    assert rejected["detail"]


def test_a_real_clip_is_probed(corpus):
    info, rejected = probe_file(corpus.root / "bikes.mp4")
    assert rejected is None
    assert (info["width"], info["height"], info["num_frames"], info["codec"]) == (640, 272, 250, "h264")
    assert info["bitrate"] == pytest.approx((corpus.root / "bikes.mp4").stat().st_size * 8 / 10.0, rel=0.01)


@pytest.mark.parametrize(
    ("gates", "reason"),
    [
        (ProbeGates(min_side=300), "too_small"),
        (ProbeGates(max_side=600), "too_large"),
        (ProbeGates(min_seconds=11), "too_short"),
        (ProbeGates(max_seconds=9), "too_long"),
        (ProbeGates(), None),
    ],
)
def test_gates(corpus, gates, reason):
    info, _ = probe_file(corpus.root / "bikes.mp4")  # 640x272, 10 s
    problem = probe_problem(info, gates)
    assert (problem and problem["reason"]) == reason


def test_gates_must_be_ordered():
    with pytest.raises(ValueError, match="min_side"):
        ProbeGates(min_side=500, max_side=100)
