"""The `kinema` command, run as a real process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kinema.data.manifest import read_manifest
from kinema.io.video import probe

KINEMA = [sys.executable, "-m", "kinema"]
SUBCOMMANDS = [
    [],
    ["data"],
    ["data", "synth"],
    ["data", "synth", "shapes"],
    ["data", "probe"],
    ["data", "preview"],
    ["config"],
    ["config", "show"],
]


def kinema(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*KINEMA, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_one_line_error(result, code: int, *fragments: str):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kinema: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "kinema"
    assert script.exists()
    result = subprocess.run([script, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("kinema ")


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: " ".join(c) or "kinema")
def test_every_command_has_help(command):
    result = kinema(*command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: kinema")


def test_top_level_help_lists_the_commands():
    out = kinema("--help").stdout
    assert "data" in out and "config" in out


def test_synth_shapes_writes_playable_clips_and_a_manifest(tmp_path):
    out = tmp_path / "demo"
    result = kinema("data", "synth", "shapes", "--num", 8, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    records = read_manifest(out / "manifest.jsonl")
    assert len(records) == 8
    for record in records:
        info = probe(out / record.path)
        assert (info.codec, info.width, info.height, info.num_frames, info.fps) == ("h264", 64, 64, 17, 8.0)
        assert record.caption
        assert (out / record.meta["ground_truth"]).is_file()
    assert "split: train" in (out / "config.yaml").read_text()


def test_synth_flags_and_overrides_reach_the_world(tmp_path):
    out = tmp_path / "small"
    result = kinema(
        "data",
        "synth",
        "shapes",
        "--num",
        2,
        "--out",
        out,
        "--size",
        "96x48",
        "--frames",
        5,
        "--fps",
        4,
        "--quiet",
        "max_objects=1",
    )
    assert result.returncode == 0, result.stderr
    records = read_manifest(out / "manifest.jsonl")
    assert {(r.width, r.height, r.num_frames, r.fps) for r in records} == {(96, 48, 5, 4.0)}
    assert all(len(r.meta["objects"]) == 1 for r in records)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["data", "synth", "shapes", "--num", "0", "--out", "x"], ["--num", "positive integer"]),
        (
            ["data", "synth", "shapes", "--num", "two", "--out", "x"],
            ["--num", "invalid positive integer value"],
        ),
        (["data", "synth", "shapes", "--num", "2", "--out", "x", "--size", "63"], ["--size", "even"]),
        (["data", "synth", "shapes", "--num", "2"], ["--out"]),
        (["data", "synth", "shapes", "--num", "2", "--out", "x", "--bogus"], ["--bogus"]),
        (["data", "synth", "shapes", "--num", "2", "--out", "x", "colour=red"], ["'colour'", "max_objects"]),
        (["data", "probe", "missing.mp4"], ["missing.mp4", "file not found"]),
        (["config", "show", "nope"], ["recipe 'nope' not found"]),
        (["config", "show", "shapes", "train.lr=fast"], ["'train.lr'", "float"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, args, fragments):
    result = kinema(*args, cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert_one_line_error(result, 2, *fragments)


def test_runtime_failure_exits_1_and_verbose_shows_the_traceback(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    args = ["data", "synth", "shapes", "--num", "1", "--out", blocker, "--quiet"]
    result = kinema(*args)
    assert_one_line_error(result, 1, "NotADirectoryError", "--verbose")
    verbose = kinema(*args, "--verbose")
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("kinema: error: NotADirectoryError")


def test_probe_reports_good_and_bad_files(tmp_path):
    kinema("data", "synth", "shapes", "--num", 1, "--out", tmp_path, "--quiet")
    clip = tmp_path / "clips" / "shapes_000000.mp4"
    (tmp_path / "empty.mp4").touch()
    result = kinema("data", "probe", clip, tmp_path / "empty.mp4", "--json")
    assert result.returncode == 2
    good, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert (good["codec"], good["num_frames"], good["vfr"]) == ("h264", 17, False)
    assert "empty" in bad["error"]


def test_preview_loads_a_batch_and_saves_the_resolved_config(tmp_path):
    out = tmp_path / "grid.png"
    result = kinema(
        "data", "preview", "shapes", "data.frames=5", "data.num_workers=0", "--clips", 3, "--out", out
    )
    assert result.returncode == 0, result.stderr
    assert "batch video (3, 3, 5, 64, 64)" in result.stdout
    assert out.stat().st_size > 0
    assert "frames: 5" in out.with_suffix(".yaml").read_text()


def test_config_show_applies_overrides():
    result = kinema("config", "show", "shapes", "train.lr=0.001", "data.frames=9")
    assert result.returncode == 0, result.stderr
    assert "lr: 0.001" in result.stdout and "frames: 9" in result.stdout
