"""The shapes-world checker: agreement with ground truth on real mp4 clips, failing when it should, API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from kinema.data.manifest import read_manifest
from kinema.data.shapes import COLORS, ShapeObject, ShapesConfig, render, synthesize
from kinema.eval.checkers import (
    NOT_FOUND,
    UNCLEAR,
    DetectedObject,
    accuracy,
    check_video,
    confusion,
    detect_objects,
    expected_from_caption,
    expected_from_truth,
    mistakes,
)
from kinema.io import read_video

REQUIRED_ACCURACY = 0.98
OPPOSITE = {
    "moving left": "moving right",
    "moving right": "moving left",
    "moving up": "moving down",
    "moving down": "moving up",
    "growing": "shrinking",
    "shrinking": "growing",
}

Clip = tuple[np.ndarray, dict]


def read_world(out_dir: Path, num: int, config: ShapesConfig, seed: int) -> list[Clip]:
    """Synthesize `num` clips as mp4 and read each back with its ground-truth JSON."""
    manifest = synthesize(out_dir, num=num, config=config, seed=seed, progress=False)
    clips = []
    for record in read_manifest(manifest):
        frames = read_video(manifest.parent / record.path)[0]
        truth = json.loads((manifest.parent / record.meta["ground_truth"]).read_text(encoding="utf-8"))
        clips.append((frames, truth))
    return clips


def score(clips: list[Clip], label: str) -> dict[str, dict]:
    """Check every clip against its ground truth, print the per-attribute counts and return them."""
    result = accuracy([check_video(frames, expected_from_truth(truth)) for frames, truth in clips])
    for key, r in result.items():
        print(f"{label} {key:6s} {r['correct']}/{r['total']} = {r['accuracy']:.3f}")
    return result


def assert_accurate(result: dict[str, dict]) -> None:
    """Every attribute agrees with the ground truth often enough."""
    for key, r in result.items():
        assert r["accuracy"] >= REQUIRED_ACCURACY, (key, r)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> list[Clip]:
    """200 default-sized clips of every split, read back from the real mp4 files."""
    return read_world(tmp_path_factory.mktemp("shapes"), 200, ShapesConfig(split="all"), seed=0)


def test_agrees_with_ground_truth_on_200_mp4_clips(world):
    result = score(world, "64x64 seed 0")
    assert_accurate(result)
    assert result["motion"]["total"] > len(world)  # two-object clips are included


@pytest.mark.parametrize(
    ("width", "height", "seed", "num"),
    [(64, 64, 1, 60), (96, 64, 2, 60), (128, 128, 3, 30)],
)
def test_agrees_at_other_seeds_and_sizes(tmp_path, width, height, seed, num):
    config = ShapesConfig(width=width, height=height, split="all")
    assert_accurate(score(read_world(tmp_path, num, config, seed), f"{width}x{height} seed {seed}"))


def test_survives_blur_and_noise_like_a_generated_clip(world):
    rng = np.random.default_rng(0)
    degraded = []
    for frames, truth in world[:60]:
        blurred = np.stack([cv2.GaussianBlur(frame, (0, 0), 1.0) for frame in frames])
        noisy = blurred + rng.normal(0.0, 12.0, frames.shape)
        degraded.append((np.clip(noisy, 0, 255).astype(np.uint8), truth))
    assert_accurate(score(degraded, "blur 1 + noise 12"))


def test_tracks_follow_the_ground_truth(world):
    for frames, truth in world[:40]:
        found = {obj.color: obj for obj in detect_objects(frames)}
        for obj in truth["objects"]:
            got = found[obj["color"]]
            assert np.hypot(got.cx - obj["cx"], got.cy - obj["cy"]).max() < 1.5
            assert np.abs(got.size / np.array(obj["size"]) - 1.0).max() < 0.3
            if obj["shape"] != "circle":
                assert np.abs(got.angle - obj["angle"]).max() < 8.0


def wrong(value: str, options) -> str:
    """Some other value of the same attribute."""
    return next(o for o in options if o != value)


@pytest.mark.parametrize("key", ["color", "shape", "motion"])
def test_a_caption_naming_the_wrong_attribute_fails(world, key):
    options = {"color": list(COLORS), "shape": ["circle", "square"], "motion": ["moving up", "rotating"]}
    frames, truth = world[0]
    expected = expected_from_truth(truth)
    expected[0][key] = wrong(expected[0][key], options[key])
    correct = check_video(frames, expected)["correct"]
    assert correct["count"] is True
    # A color nobody drew matches no object, so its shape and motion can't be right either.
    wrong_keys = ["color", "shape", "motion"] if key == "color" else [key]
    for attribute in ("color", "shape", "motion"):
        assert correct[attribute][0] is (attribute not in wrong_keys), attribute


def test_an_empty_video_gets_everything_wrong(world):
    _, truth = world[0]
    result = check_video(np.zeros((17, 64, 64, 3), np.uint8), expected_from_truth(truth))
    assert result["found"] == []
    assert result["correct"]["count"] is False
    assert not any(result["correct"]["color"] + result["correct"]["shape"] + result["correct"]["motion"])


def directional_objects(world: list[Clip]) -> list[tuple[np.ndarray, dict]]:
    """(frames, object) for every object whose motion has a direction in time."""
    return [(frames, obj) for frames, truth in world for obj in truth["objects"] if obj["motion"] in OPPOSITE]


def test_playing_a_clip_backwards_flips_its_motion(world):
    pairs = directional_objects(world)
    assert len(pairs) > 50
    for frames, obj in pairs:
        found = {o.color: o for o in detect_objects(frames[::-1])}
        assert found[obj["color"]].motion == OPPOSITE[obj["motion"]]


def test_shuffling_the_frames_breaks_a_steady_motion(world):
    rng = np.random.default_rng(0)
    for frames, obj in directional_objects(world):
        found = {o.color: o for o in detect_objects(frames[rng.permutation(len(frames))])}
        assert found[obj["color"]].motion != obj["motion"]


def rendered(shape: str, color: str, frames: int = 9, **track) -> np.ndarray:
    """One object on black at 64x64; a track is a constant, a (start, end) pair or a function of t."""
    return render(
        [shape_object(shape, color, frames, **track)], {"kind": "black", "colors": ["black"]}, 64, 64
    )


def shape_object(shape: str, color: str, frames: int = 9, **track) -> ShapeObject:
    """An object with the given tracks, centred and still unless told otherwise."""
    t = np.linspace(0.0, 1.0, frames)
    tracks = {"cx": 32.0, "cy": 32.0, "size": 8.0, "angle": 0.0} | track
    for key, value in tracks.items():
        if callable(value):
            tracks[key] = value(t)
        elif np.isscalar(value):
            tracks[key] = np.full_like(t, value)
        else:
            tracks[key] = value[0] + (value[1] - value[0]) * t
    return ShapeObject(shape, color, "unused", **tracks)


@pytest.mark.parametrize(
    ("shape", "color", "track", "motion"),
    [
        ("square", "red", {}, "staying still"),
        ("circle", "blue", {"cx": (14.0, 50.0)}, "moving right"),
        ("triangle", "green", {"cy": (50.0, 14.0)}, "moving up"),
        ("square", "white", {"cx": (14.0, 46.0), "cy": (46.0, 14.0)}, "moving diagonally"),
        ("circle", "yellow", {"size": (5.0, 11.0)}, "growing"),
        ("triangle", "purple", {"size": (12.0, 6.0)}, "shrinking"),
        ("square", "cyan", {"angle": (0.0, 90.0)}, "rotating"),
        ("triangle", "orange", {"angle": (0.0, -120.0)}, "rotating"),
        ("circle", "red", {"cy": lambda t: 54.0 - 144.0 * t * (1.0 - t)}, "bouncing"),
    ],
)
def test_a_rendered_object_is_seen_for_what_it_is(shape, color, track, motion):
    (found,) = detect_objects(rendered(shape, color, **track))
    assert (found.color, found.shape, found.motion) == (color, shape, motion)


def test_two_objects_are_told_apart_by_color():
    objects = [
        shape_object("square", "red", cx=16.0),
        shape_object("circle", "orange", cx=48.0, cy=(14.0, 50.0)),
    ]
    frames = render(objects, {"kind": "solid", "colors": ["brown"]}, 64, 64)
    found = {(o.color, o.shape, o.motion) for o in detect_objects(frames)}
    assert found == {("red", "square", "staying still"), ("orange", "circle", "moving down")}


def test_rotation_is_tracked_through_the_symmetry_period():
    (found,) = detect_objects(rendered("square", "red", angle=(0.0, 100.0), frames=17))
    np.testing.assert_allclose(found.angle, np.linspace(0.0, 100.0, 17), atol=4.0)


def test_a_rotating_circle_is_accepted_as_still_because_it_looks_the_same():
    frames = rendered("circle", "red")
    assert check_video(frames, expected_from_caption("a red circle spinning"))["correct"]["motion"] == [True]
    square = rendered("square", "red")
    assert check_video(square, expected_from_caption("a red square spinning"))["correct"]["motion"] == [False]


@pytest.mark.parametrize(
    ("caption", "objects"),
    [
        ("a red circle moving right", [("circle", "red", "moving right")]),
        (
            "A spinning blue square and a green triangle rising on a gray background",
            [("square", "blue", "rotating"), ("triangle", "green", "moving up")],
        ),
        ("a bright white box getting bigger", [("square", "white", "growing")]),
        ("a triangle", [("triangle", None, None)]),
    ],
)
def test_expected_from_caption_reads_prompts(caption, objects):
    assert expected_from_caption(caption) == [{"color": c, "shape": s, "motion": m} for s, c, m in objects]


def test_expected_from_truth_matches_the_caption(world):
    for _, truth in world[:20]:
        assert expected_from_truth(truth) == expected_from_caption(truth["caption"])


def test_unsaid_attributes_are_skipped_and_matched_by_what_was_said():
    frames = rendered("triangle", "green", cy=(50.0, 14.0))
    result = check_video(frames, expected_from_caption("a triangle"))
    assert result["correct"] == {"color": [None], "shape": [True], "motion": [None], "count": True}
    assert accuracy([result])["color"] == {"correct": 0, "total": 0, "accuracy": None}


def test_results_are_small_json(world):
    frames, truth = world[1]
    result = check_video(frames, expected_from_truth(truth))
    text = json.dumps(result, allow_nan=False)
    assert len(text) < 1000
    assert json.loads(text)["expected"] == expected_from_truth(truth)
    full = detect_objects(frames)[0].to_dict(tracks=True)
    assert len(json.loads(json.dumps(full, allow_nan=False))["cx"]) == len(frames)


def test_accuracy_counts_per_attribute():
    checks = [
        {"correct": {"color": [True, False], "shape": [True, None], "motion": [False, True], "count": True}},
        {"correct": {"color": [True], "shape": [False], "motion": [None], "count": False}},
    ]
    result = accuracy(checks)
    assert result["color"] == {"correct": 2, "total": 3, "accuracy": 2 / 3}
    assert result["shape"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert result["motion"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert result["count"] == {"correct": 1, "total": 2, "accuracy": 0.5}


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((4, 16, 16, 3), np.float32), "uint8"),
        (np.zeros((16, 16, 3), np.uint8), "uint8"),
        (np.zeros((4, 16, 16, 4), np.uint8), "uint8"),
        (np.zeros((1, 16, 16, 3), np.uint8), "at least 2 frames"),
        ([[0]], "numpy array"),
    ],
)
def test_bad_input_raises_value_error(frames, message):
    with pytest.raises(ValueError, match=message):
        detect_objects(frames)
    with pytest.raises(ValueError, match=message):
        check_video(frames, [])


def test_a_circle_shows_no_orientation():
    (found,) = detect_objects(rendered("circle", "red"))
    assert isinstance(found, DetectedObject)
    assert np.isnan(found.angle).all()


def test_the_checker_never_loads_torch():
    code = "import sys, kinema.eval.checkers; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_confusion_says_what_the_checker_saw_instead():
    up = rendered("triangle", "green", cy=(50.0, 14.0))
    still_circle = rendered("circle", "blue")
    checks = [
        check_video(up, expected_from_caption("a green triangle moving up")),
        check_video(up, expected_from_caption("a green square moving down")),
        check_video(up, expected_from_caption("a red triangle")),
        # A still circle passes for a rotating one, so the table counts it as right.
        check_video(still_circle, expected_from_caption("a blue circle rotating")),
    ]
    table = confusion(checks)
    assert table["motion"] == {
        "moving up": {"moving up": 1},
        "moving down": {"moving up": 1},
        "rotating": {"rotating": 1},
    }
    assert table["shape"] == {
        "triangle": {"triangle": 1, NOT_FOUND: 1},
        "square": {"triangle": 1},
        "circle": {"circle": 1},
    }
    assert table["color"] == {"green": {"green": 2}, "red": {NOT_FOUND: 1}, "blue": {"blue": 1}}
    assert mistakes(table, "shape") == [("square", "triangle", 1), ("triangle", NOT_FOUND, 1)]
    assert mistakes(table, "motion") == [("moving down", "moving up", 1)]
    assert json.loads(json.dumps(checks[1]))["matched"] == [0]


def test_confusion_calls_a_track_that_fits_no_motion_unclear():
    shuffled = rendered("square", "red", cx=lambda t: 32.0 + 16.0 * np.sin(6 * np.pi * t))
    table = confusion([check_video(shuffled, expected_from_caption("a red square moving right"))])
    assert table["motion"] == {"moving right": {UNCLEAR: 1}}
