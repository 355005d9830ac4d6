"""Playing a world model: games, teacher forcing, rollouts against the true frames, and their scores."""

import json
import subprocess
import sys

import numpy as np
import pytest

from kinema.data.manifest import clip_path, read_manifest
from kinema.errors import KinemaError
from kinema.generate.world import WorldModel, start_frames, write_rollouts
from kinema.io.video import probe, read_video


@pytest.fixture(scope="module")
def world(tiny_world) -> WorldModel:
    return WorldModel.from_pretrained(tiny_world[0])


def real_clip(tiny_world, index: int = 0) -> tuple[np.ndarray, list[int]]:
    manifest = tiny_world[1]
    record = read_manifest(manifest)[index]
    return read_video(clip_path(record, manifest))[0], record.actions


def test_teacher_forced_frames_depend_only_on_the_real_frames_before_them(world, tiny_world):
    real, actions = real_clip(tiny_world)
    forced = world.rollout(real[0], actions[1:8], truth=real[1:8])
    altered = real.copy()
    altered[4] = 255 - altered[4]  # change the real frame 4 only
    after = world.rollout(real[0], actions[1:8], truth=altered[1:8])
    assert np.array_equal(forced[:5], after[:5]), "frames up to 4 never see real frame 4"
    assert not np.array_equal(forced[5:], after[5:]), "frames after 4 are predicted from it"
    free = world.rollout(real[0], actions[1:8])
    assert np.array_equal(free[:2], forced[:2]) and not np.array_equal(free, forced)


def test_a_start_frame_is_where_the_game_begins(world, tiny_world):
    starts = start_frames(tiny_world[0])
    game = world.new_game(starts[1], seed=3)
    assert np.array_equal(game.first_frame, starts[1]) and game.frames_made == 1
    assert game.step(2).shape == (1, 32, 32, 3) and game.frames_made == 2


def test_rollouts_are_written_beside_the_truth_and_scored_by_kinema_eval(world, tiny_world, tmp_path):
    manifest = tiny_world[1]
    made, truth = write_rollouts(world, manifest, tmp_path / "free", frames=30, progress=False)
    names = sorted(p.name for p in made.iterdir())
    assert names == sorted(p.name for p in truth.iterdir()) and len(names) == 3
    assert probe(made / names[0]).num_frames == 30, "longer than its 20-frame clip: actions replayed"
    assert probe(truth / names[0]).num_frames == 20
    forced, _ = write_rollouts(
        world, manifest, tmp_path / "forced", frames=30, teacher_forced=True, progress=False
    )
    assert probe(forced / names[0]).num_frames == 20, "teacher forcing stops with the real frames"

    report = tmp_path / "scores.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kinema",
            "eval",
            str(made),
            "--reference",
            str(truth),
            "--json",
            str(report),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(report.read_text())
    compared = [row["reference"] for row in scores["videos"]]
    assert all(len(r["psnr"]) == 20 for r in compared), "PSNR at every frame both have"
    assert all(r["psnr"][0] > 25 for r in compared), "frame 0 is the real start frame (through the codec)"


def test_rollout_of_a_recording_without_actions_is_an_error(world, tmp_path):
    (tmp_path / "m.jsonl").write_text(
        '{"path": "x.mp4", "fps": 15, "num_frames": 5, "width": 32, "height": 32}\n'
    )
    with pytest.raises(KinemaError, match="no clip with actions"):
        write_rollouts(world, tmp_path / "m.jsonl", tmp_path / "out", progress=False)


def test_rollout_command_refuses_a_text_to_video_model(tmp_path):
    from kinema.generate.pipeline import BUNDLED

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kinema",
            "rollout",
            "--model",
            str(BUNDLED),
            "--manifest",
            "m.jsonl",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "a text-to-video pipeline, not a world model" in result.stderr
