"""The game recorder, on real ALE and ViZDoom games."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from kinema.data import games
from kinema.data.games import RecordSettings, record
from kinema.data.manifest import clip_path, read_manifest
from kinema.errors import KinemaError
from kinema.io.video import read_video
from tests.conftest import require_extra

require_extra("gymnasium", "games")
require_extra("ale_py", "games")

BREAKOUT = "ALE/Breakout-v5"


def clips(manifest):
    """Each record with its decoded frames."""
    return [(r, read_video(clip_path(r, manifest))[0]) for r in read_manifest(manifest)]


def test_breakout_recording_has_clips_actions_and_episode_bounds(tmp_path):
    settings = RecordSettings(
        BREAKOUT, frames=150, width=80, height=64, clip_frames=40, max_episode_frames=90
    )
    manifest = record(tmp_path, settings, progress=False)
    recorded = clips(manifest)

    assert sum(r.num_frames for r, _ in recorded) == 150
    for r, frames in recorded:
        assert frames.shape == (r.num_frames, 64, 80, 3) and len(r.actions) == r.num_frames
        assert set(r.actions) <= {0, 1, 2, 3} and r.fps == 15.0
    episode0 = [r for r, _ in recorded if r.meta["episode"] == 0]
    assert [r.meta["start"] for r in episode0] == [0, 40, 80]
    assert [r.meta["episode_end"] for r in episode0] == [False, False, True]
    assert episode0[0].actions[0] == 0, "the reset frame carries the no-op"
    assert episode0[0].meta["start"] == 0 and recorded[-1][0].meta["episode"] == 1
    info = json.loads((tmp_path / "recording.json").read_text())
    assert info["action_names"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert recorded[0][1].std() > 10, "frames show the game, not a blank screen"


def paddle_moves(manifest) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the paddle's horizontal move (from the pixels) and the recorded action."""
    moves, actions = [], []
    for r, frames in clips(manifest):
        lit = frames[:, 189:194, 8:152, 0].max(1) > 120  # the red paddle's rows in the 210x160 screen
        x = np.array([np.flatnonzero(row).mean() if row.any() else np.nan for row in lit])
        moves.append(np.diff(x))
        actions.append(np.array(r.actions[1:]))
    return np.concatenate(moves), np.concatenate(actions)


def test_recorded_actions_are_the_ones_that_made_each_frame(tmp_path):
    settings = RecordSettings(BREAKOUT, frames=400, width=160, height=210, policy="random")
    moves, actions = paddle_moves(record(tmp_path, settings, progress=False))

    def agreement(lag: int) -> float:
        shifted = np.roll(actions, lag)
        steer = (shifted == 2) | (shifted == 3)  # RIGHT, LEFT
        return float(np.mean(np.sign(moves[steer]) == np.where(shifted[steer] == 2, 1, -1)))

    assert agreement(0) > 0.6, "RIGHT moves the paddle right and LEFT left, in the same frame"
    assert agreement(0) > max(agreement(-1), agreement(1)) + 0.1, "labels are not off by one frame"


def test_sticky_policy_holds_actions_and_seeds_repeat(tmp_path):
    def actions(policy: str, seed: int) -> list[int]:
        rng = games.episode_seeds(seed, 0)[1]
        settings = RecordSettings(BREAKOUT, frames=1, policy=policy)
        out, previous = [], None
        for _ in range(2000):
            previous = games.next_action(settings, rng, previous, 4)
            out.append(previous)
        return out

    def mean_run(seq: list[int]) -> float:
        return len(seq) / (1 + sum(a != b for a, b in itertools.pairwise(seq)))

    assert 3.0 < mean_run(actions("sticky", 0)) < 6.0  # hold 4, minus resamples that draw the same action
    assert mean_run(actions("random", 0)) < 1.6
    assert actions("sticky", 0) == actions("sticky", 0) != actions("sticky", 1)


def test_explore_leaves_an_action_that_stops_changing_the_screen():
    policy = games.ExplorePolicy(hold=1e9, rng=np.random.default_rng(0), num_actions=4)
    wall = np.full((64, 64, 3), 90, np.uint8)
    taken = [policy(wall) for _ in range(1 + games.STUCK_STEPS)]
    assert taken[: games.STUCK_STEPS] == [taken[0]] * games.STUCK_STEPS, "held while it may still move"
    assert taken[-1] != taken[0], "dropped after STUCK_STEPS still screens"


def test_explore_favours_actions_that_lead_to_screens_not_seen_yet():
    """A toy game: action 1 shows a new screen every time, the others one of two known screens."""
    rng = np.random.default_rng(1)
    known = [np.full((64, 64, 3), v, np.uint8) for v in (40, 200)]
    policy = games.ExplorePolicy(hold=4.0, rng=np.random.default_rng(0), num_actions=4)
    screen, taken = known[0], []
    for step in range(600):
        action = policy(screen)
        taken.append(action)
        screen = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) if action == 1 else known[step % 2]
    assert np.mean(np.array(taken[100:]) == 1) > 0.6  # a sticky policy takes each action 25% of the time


def test_explore_recording_is_seeded_and_keeps_each_episode_return(tmp_path):
    settings = RecordSettings(BREAKOUT, frames=120, policy="explore", max_episode_frames=60)
    first = read_manifest(record(tmp_path / "a", settings, progress=False))
    again = read_manifest(record(tmp_path / "b", settings, progress=False))
    assert [r.actions for r in first] == [r.actions for r in again]
    ends = [r for r in first if r.meta["episode_end"]]
    assert len(ends) == 2 and all(isinstance(r.meta["return"], float) for r in ends)
    assert len(set(first[0].actions)) > 1


def test_an_interrupted_recording_resumes_without_redoing_finished_episodes(tmp_path, monkeypatch):
    settings = RecordSettings(BREAKOUT, frames=200, clip_frames=32, max_episode_frames=60)
    whole = read_manifest(record(tmp_path / "whole", settings, progress=False))

    real_write, calls = games._write_episode, []

    def crash_on_the_third_episode(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(games, "_write_episode", crash_on_the_third_episode)
    with pytest.raises(KeyboardInterrupt):
        record(tmp_path / "cut", settings, progress=False)
    monkeypatch.setattr(games, "_write_episode", real_write)
    manifest = tmp_path / "cut" / "manifest.jsonl"
    assert {r.meta["episode"] for r in read_manifest(manifest)} == {0, 1}
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cut" / "clips").iterdir()}

    resumed = read_manifest(record(tmp_path / "cut", settings, progress=False))
    assert [r.to_json() for r in resumed] == [r.to_json() for r in whole]
    for name, stamp in stamps.items():
        assert (tmp_path / "cut" / "clips" / name).stat().st_mtime_ns == stamp, f"{name} was redone"
    for (_, a), (_, b) in zip(clips(manifest), clips(tmp_path / "whole" / "manifest.jsonl"), strict=True):
        assert np.array_equal(a, b)


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    record(tmp_path, RecordSettings(BREAKOUT, frames=20), progress=False)
    with pytest.raises(KinemaError, match=r"other settings.*width"):
        record(tmp_path, RecordSettings(BREAKOUT, frames=20, width=32), progress=False)
    more = read_manifest(record(tmp_path, RecordSettings(BREAKOUT, frames=50), progress=False))
    assert sum(r.num_frames for r in more) == 50, "asking for more frames extends the recording"


def test_vizdoom_records_its_screen_and_button_names(tmp_path):
    require_extra("vizdoom", "games")
    settings = RecordSettings("VizdoomBasic-v1", frames=40, width=80, height=64, frame_skip=4)
    recorded = clips(record(tmp_path, settings, progress=False))
    names = json.loads((tmp_path / "recording.json").read_text())["action_names"]
    assert names[0] == "NOOP" and "MOVE_LEFT" in names and "ATTACK" in names
    for r, frames in recorded:
        assert frames.shape == (r.num_frames, 64, 80, 3)
        assert frames.reshape(len(frames), -1).std(1).min() > 5, "no blank placeholder frames"
    assert sum(r.num_frames for r, _ in recorded) == 40


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--env", "ALE/NoSuchGame-v5", "--frames", "5"], "unknown environment 'ALE/NoSuchGame-v5'"),
        (["--env", BREAKOUT, "--frames", "0"], "--frames: must be a positive integer"),
        (["--env", BREAKOUT, "--frames", "5", "--size", "63"], "--size: width and height must be even"),
        (["--env", BREAKOUT, "--frames", "5", "--policy", "smart"], "invalid choice: 'smart'"),
    ],
)
def test_record_usage_errors_are_one_line(tmp_path, args, fragment):
    result = subprocess.run(
        [sys.executable, "-m", "kinema", "data", "record", *args, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kinema: error: ") and fragment in lines[0], result.stderr
