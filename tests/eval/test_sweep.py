"""The sweep harness, driven by a trivial generator of noisy shapes-world clips."""

import json

import numpy as np
import pytest

from kinema.cli import main
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.eval.report import write_sweep_report
from kinema.eval.sweep import format_sweep, load_generator, parse_sweep, prompt_seed, run_sweep

CALLS: list[dict] = []


def noisy_shapes(prompt: str, seed: int, noise: float = 0.0) -> tuple[np.ndarray, float]:
    """A real shapes clip chosen by seed, with Gaussian pixel noise: more noise, more flicker."""
    CALLS.append({"prompt": prompt, "seed": seed, "noise": noise})
    clip = make_clip(ShapesConfig(max_objects=1), index=seed, seed=0)
    rng = np.random.default_rng(seed)
    frames = clip.frames + rng.normal(0, noise, clip.frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8), clip.fps


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("steps=10,20,50", ("steps", [10, 20, 50])),
        ("cfg=1,3.5,6", ("cfg", [1, 3.5, 6])),
        ("sampler=euler,heun", ("sampler", ["euler", "heun"])),
    ],
)
def test_parse_sweep(spec, expected):
    assert parse_sweep(spec) == expected


@pytest.mark.parametrize("spec", ["steps", "=1,2", "steps=", "steps=1,,2", "steps=1,1", "2x=1,2"])
def test_parse_sweep_rejects_bad_specs(spec):
    with pytest.raises(ValueError, match="sweep"):
        parse_sweep(spec)


def test_load_generator_from_module_and_file(tmp_path):
    assert load_generator("json:dumps") is json.dumps
    script = tmp_path / "gen.py"
    script.write_text("def make(prompt, seed):\n    return prompt\n")
    assert load_generator(f"{script}:make")("hi", 0) == "hi"
    with pytest.raises(ValueError, match="no function 'nope'"):
        load_generator("json:nope")
    with pytest.raises(ValueError, match="MODULE:FUNCTION"):
        load_generator("json")


def test_sweep_varies_one_parameter_over_fixed_prompts_and_seeds(tmp_path):
    CALLS.clear()
    prompts = ["a red circle moving right", "a blue square"]
    table, evaluations = run_sweep(
        noisy_shapes, "noise", [0.0, 20.0, 60.0], prompts, [1, 2], tmp_path, progress=False
    )
    assert len(CALLS) == 3 * 2 * 2
    assert {(c["prompt"], c["seed"]) for c in CALLS if c["noise"] == 20.0} == {
        (p, s) for p in prompts for s in (1, 2)
    }
    rows = table["rows"]
    assert [row["noise"] for row in rows] == [0.0, 20.0, 60.0]
    assert all(row["videos"] == 4 and row["errors"] == 0 and row["seconds_per_video"] > 0 for row in rows)
    flicker = [row["metrics"]["temporal_flickering"] for row in rows]
    sharpness = [row["metrics"]["sharpness_mean"] for row in rows]
    assert flicker[0] > flicker[1] > flicker[2] and sharpness[0] < sharpness[1] < sharpness[2]
    assert set(evaluations) == {"noise=0.0", "noise=20.0", "noise=60.0"}
    assert sorted(p.name for p in (tmp_path / "noise=20.0").glob("*.mp4")) == [
        "prompt000_seed1.mp4",
        "prompt000_seed2.mp4",
        "prompt001_seed1.mp4",
        "prompt001_seed2.mp4",
    ]
    # The prompts named shapes, so each video was checked against its own prompt.
    assert rows[0]["checker"]["shape"] is not None
    lines = format_sweep(table).splitlines()
    assert lines[0].split()[:2] == ["noise", "s/video"] and len(lines) == 4


def test_sweep_resumes_without_regenerating(tmp_path):
    run_sweep(noisy_shapes, "noise", [0.0, 5.0], ["a red circle"], [0], tmp_path, progress=False)
    (tmp_path / "noise=5.0" / "prompt000_seed0.mp4").unlink()
    CALLS.clear()
    table, _ = run_sweep(noisy_shapes, "noise", [0.0, 5.0], ["a red circle"], [0], tmp_path, progress=False)
    assert CALLS == [{"prompt": "a red circle", "seed": 0, "noise": 5.0}]
    assert [row["videos"] for row in table["rows"]] == [1, 1]


def test_seed_per_prompt_gives_no_two_prompts_the_same_starting_noise(tmp_path):
    CALLS.clear()
    prompts = ["a red circle", "a blue square", "a green triangle"]
    table, _ = run_sweep(
        noisy_shapes, "noise", [0.0], prompts, [0, 1], tmp_path, progress=False, seed_per_prompt=True
    )
    assert [(c["prompt"], c["seed"]) for c in CALLS] == [
        ("a red circle", 0),
        ("a red circle", 1),
        ("a blue square", 2),
        ("a blue square", 3),
        ("a green triangle", 4),
        ("a green triangle", 5),
    ]
    sidecars = sorted((tmp_path / "noise=0.0").glob("*.json"))
    assert [json.loads(f.read_text())["seed"] for f in sidecars] == [0, 1, 2, 3, 4, 5]
    assert table["seed_per_prompt"] is True and table["rows"][0]["videos"] == 6
    assert prompt_seed(-1, 2, [-1, 3]) == 9  # the seeds' span (5), not their count, keeps pairs apart


def test_sweep_command_gives_each_prompt_its_own_seed(tmp_path):
    script = tmp_path / "gen.py"
    script.write_text(
        "import numpy as np\n"
        "def make(prompt, seed, level):\n"
        "    return np.full((5, 16, 16, 3), seed * 10 + level, np.uint8), 8.0\n"
    )
    out = tmp_path / "sweep"
    args = ["sweep", "level=1", "--prompt", "a", "--prompt", "b", "--seeds", "0,4", "--seed-per-prompt"]
    assert main([*args, "--generator", f"{script}:make", "--out", str(out), "--quiet"]) == 0
    assert sorted(v.name for v in (out / "level=1").glob("*.mp4")) == [
        "prompt000_seed0.mp4",
        "prompt000_seed4.mp4",
        "prompt001_seed5.mp4",
        "prompt001_seed9.mp4",
    ]
    assert json.loads((out / "sweep.json").read_text())["seed_per_prompt"] is True


def test_sweep_cannot_vary_prompt_or_seed(tmp_path):
    with pytest.raises(ValueError, match="fixed by the sweep"):
        run_sweep(noisy_shapes, "seed", [1, 2], ["x"], [0], tmp_path, progress=False)


def test_sweep_report_loads_in_chromium(tmp_path, browser):
    table, _ = run_sweep(
        noisy_shapes, "noise", [0.0, 30.0], ["a red circle"], [0, 1], tmp_path, progress=False
    )
    report = write_sweep_report(tmp_path / "report.html", table)
    page = browser.new_page()
    page.goto(report.as_uri(), wait_until="load")
    assert page.evaluate("() => Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("table.grid tbody tr").count() == 2
    assert page.locator("a[href='noise=30.0/report.html']").count() == 1
