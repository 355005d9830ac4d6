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
    ["data", "record"],
    ["data", "preview"],
    ["config"],
    ["config", "show"],
    ["eval"],
    ["sweep"],
    ["train"],
    ["train", "vae"],
    ["train", "t2v"],
    ["train", "world"],
    ["rollout"],
    ["play"],
    ["generate"],
    ["stream"],
    ["reconstruct"],
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


def test_probe_writes_a_manifest_of_the_readable_files(tmp_path):
    kinema("data", "synth", "shapes", "--num", 2, "--out", tmp_path, "--quiet")
    clips = sorted((tmp_path / "clips").glob("*.mp4"))
    (tmp_path / "empty.mp4").touch()
    manifest = tmp_path / "real" / "manifest.jsonl"
    result = kinema("data", "probe", *clips, tmp_path / "empty.mp4", "--manifest", manifest)
    assert result.returncode == 2 and f"wrote {manifest}: 2 clips" in result.stdout
    records = read_manifest(manifest)
    assert [(r.num_frames, r.width, r.fps) for r in records] == [(17, 64, 8.0)] * 2
    assert records[0].path == str(clips[0].resolve())  # outside the manifest's folder: absolute


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


@pytest.fixture(scope="module")
def eval_folder(tmp_path_factory) -> Path:
    """Three real clips, one cut in half and one text file posing as a video."""
    out = tmp_path_factory.mktemp("eval")
    assert kinema("data", "synth", "shapes", "--num", 3, "--out", out / "shapes", "--quiet").returncode == 0
    videos = out / "videos"
    videos.mkdir()
    for clip in sorted((out / "shapes" / "clips").glob("*.mp4")):
        (videos / clip.name).write_bytes(clip.read_bytes())
    whole = (videos / "shapes_000000.mp4").read_bytes()
    (videos / "broken.mp4").write_bytes(whole[: len(whole) // 3])
    (videos / "text.mp4").write_text("hello")
    return out


def test_eval_reports_corrupt_files_and_exits_0(eval_folder, tmp_path):
    result = kinema(
        "eval",
        eval_folder / "videos",
        "--manifest",
        eval_folder / "shapes" / "manifest.jsonl",
        "--json",
        tmp_path / "eval.json",
        "--report",
        tmp_path / "report.html",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "scored 3 of 5 videos" in result.stdout
    assert "broken.mp4" in result.stdout and "broken.mp4" in result.stderr
    assert "checker: color " in result.stdout and "count 3/3 (100.0%)" in result.stdout
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert summary["summary"]["errors"] == 2 and summary["checker"]["count"]["total"] == 3
    html = (tmp_path / "report.html").read_text()
    assert "broken.mp4" in html and html.count("<img") >= 9


def test_eval_with_a_reference_prints_psnr_and_says_fvd_is_unavailable(eval_folder):
    result = kinema(
        "eval", eval_folder / "shapes" / "clips", "--reference", eval_folder / "shapes" / "clips", "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert "PSNR vs reference: 100.00 dB at frame 0" in result.stdout
    assert "FVD: unavailable: FVD needs the standard I3D weights" in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "give videos or folders"),
        (["x.mp4", "--reference", "no/such/dir"], "reference folder not found"),
        (["x.mp4", "--i3d", "no/such/i3d.pt"], "I3D weights file not found"),
        (["--manifest", "no/such/manifest.jsonl"], "manifest not found"),
    ],
)
def test_eval_usage_errors(args, fragment):
    assert_one_line_error(kinema("eval", *args), 2, fragment)


def test_eval_of_an_empty_folder_is_an_error(tmp_path):
    assert_one_line_error(kinema("eval", tmp_path), 2, "no videos found")


GENERATOR = """
import numpy as np

def brightness(prompt, seed, level):
    frames = np.full((5, 32, 32, 3), level, np.uint8)
    frames[:, 8:16, 8 + seed : 16 + seed] = 255
    return frames, 8.0
"""


def test_sweep_writes_a_table_json_and_reports(tmp_path):
    generator = tmp_path / "gen.py"
    generator.write_text(GENERATOR)
    out = tmp_path / "sweep"
    result = kinema(
        "sweep",
        "level=0,60",
        "--prompt",
        "a lamp",
        "--seeds",
        "0,1",
        "--generator",
        f"{generator}:brightness",
        "--out",
        out,
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()[:3]
    assert header.split()[:2] == ["level", "s/video"] and [r.split()[0] for r in rows] == ["0", "60"]
    table = json.loads((out / "sweep.json").read_text())
    assert [row["videos"] for row in table["rows"]] == [2, 2]
    assert (out / "report.html").is_file() and (out / "level=60" / "report.html").is_file()


def test_sweep_takes_prompts_from_text_files_and_manifests(tmp_path):
    generator = tmp_path / "gen.py"
    generator.write_text(GENERATOR)
    kinema("data", "synth", "shapes", "--num", 2, "--out", tmp_path / "data", "--quiet")
    captions = [r.caption for r in read_manifest(tmp_path / "data" / "manifest.jsonl")]
    (tmp_path / "prompts.txt").write_text("a lamp\n\n  a desk  \n")
    sources = ["--prompts", tmp_path / "prompts.txt", "--prompts", tmp_path / "data" / "manifest.jsonl"]
    out = tmp_path / "sweep"
    result = kinema(
        "sweep", "level=0", *sources, "--generator", f"{generator}:brightness", "--out", out, "--quiet"
    )
    assert result.returncode == 0, result.stderr
    prompts = [json.loads(p.read_text())["prompt"] for p in sorted((out / "level=0").glob("*.json"))]
    assert sorted(prompts) == sorted(["a lamp", "a desk", *captions])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["steps", "--prompt", "x", "--generator", "json:dumps"], "NAME=V1,V2"),
        (["steps=1,2", "--prompt", "x", "--generator", "json:nope"], "no function 'nope'"),
        (["steps=1,2", "--generator", "json:dumps"], "at least one --prompt"),
        (
            ["steps=1,2", "--prompt", "x", "--seeds", "a", "--generator", "json:dumps"],
            "comma-separated integers",
        ),
    ],
)
def test_sweep_usage_errors(args, fragment, tmp_path):
    assert_one_line_error(kinema("sweep", *args, "--out", tmp_path), 2, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["vae", "no_such_recipe"], "recipe 'no_such_recipe' not found"),
        (["vae", "vae_shapes", "vae.latent_channel=8"], "unknown config key 'vae.latent_channel'"),
        (["t2v", "t2v_shapes", "train.steps=0"], "train.steps must be >= 1"),
        (["t2v", "t2v_shapes", "dit.num_layers=many"], "dit.num_layers"),
    ],
)
def test_train_usage_errors(args, fragment, tmp_path):
    assert_one_line_error(kinema("train", *args, f"train.out_dir={tmp_path}"), 2, fragment)
