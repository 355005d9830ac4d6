"""The shapes world: determinism, vocabulary, captions, ground truth against pixels, splits and files."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from kinema.data.manifest import read_manifest
from kinema.data.shapes import (
    BACKGROUND_KINDS,
    BACKGROUNDS,
    COLOR_PHRASES,
    COLORS,
    MOTION_PHRASES,
    MOTIONS,
    SHAPE_PHRASES,
    SHAPES,
    ShapesClip,
    ShapesConfig,
    background_image,
    make_clip,
    parse_caption,
    render,
    synthesize,
)
from kinema.io import read_video

NUM_CLIPS = 300


def clips(config: ShapesConfig, num: int = NUM_CLIPS, seed: int = 0) -> list[ShapesClip]:
    """Clips 0..num-1 of a world."""
    return [make_clip(config, i, seed) for i in range(num)]


@pytest.fixture(scope="module")
def world() -> list[ShapesClip]:
    """Default-sized clips of every split, shared by the tests that only read them."""
    return clips(ShapesConfig(split="all"))


@pytest.fixture(scope="module")
def single_on_black() -> list[ShapesClip]:
    """Single-object clips on black, where every lit pixel belongs to the object."""
    return clips(ShapesConfig(max_objects=1, background_weights=[1.0, 0.0, 0.0], split="all"), num=150)


def by_motion(world: list[ShapesClip]) -> dict[str, list]:
    """The objects of all clips, grouped by motion."""
    groups: dict[str, list] = {m: [] for m in MOTIONS}
    for clip in world:
        for obj in clip.objects:
            groups[obj.motion].append(obj)
    return groups


def expected_area(shape: str, size: float) -> float:
    """Area in pixels of a shape of the given ground-truth size."""
    return {"circle": math.pi, "square": 4.0, "triangle": 3 * math.sqrt(3) / 4}[shape] * size**2


def test_same_arguments_give_identical_clips():
    config = ShapesConfig()
    a, b = make_clip(config, 7, seed=3), make_clip(config, 7, seed=3)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (17, 64, 64, 3)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert json.dumps(a.ground_truth()) == json.dumps(b.ground_truth())


def test_different_index_or_seed_gives_different_clips():
    config = ShapesConfig()
    base = make_clip(config, 7, seed=3).frames
    assert not np.array_equal(base, make_clip(config, 8, seed=3).frames)
    assert not np.array_equal(base, make_clip(config, 7, seed=4).frames)


def test_every_value_of_the_vocabulary_appears(world):
    objects = [obj for clip in world for obj in clip.objects]
    assert {o.color for o in objects} == set(COLORS)
    assert {o.shape for o in objects} == set(SHAPES)
    assert {o.motion for o in objects} == set(MOTIONS)
    assert {len(clip.objects) for clip in world} == {1, 2}
    assert {clip.background["kind"] for clip in world} == set(BACKGROUND_KINDS)
    assert not any(o.shape == "circle" and o.motion == "rotating" for o in objects)


def test_max_objects_one_gives_single_object_clips():
    assert all(len(clip.objects) == 1 for clip in clips(ShapesConfig(max_objects=1), num=100))


def test_caption_parses_back_exactly(world):
    for clip in world:
        expected = [{"shape": o.shape, "color": o.color, "motion": o.motion} for o in clip.objects]
        assert parse_caption(clip.caption) == {"objects": expected, "background": clip.background}, (
            clip.caption
        )


def test_captions_vary():
    captions = [clip.caption for clip in clips(ShapesConfig(), num=100)]
    assert len(set(captions)) == len(captions)
    assert len({c.split(" ")[0] for c in captions}) >= 4


@pytest.mark.parametrize(
    ("prompt", "objects", "background"),
    [
        (
            "a red circle moving right",
            [("circle", "red", "moving right")],
            {"kind": "black", "colors": ["black"]},
        ),
        (
            "A spinning blue square and a green triangle rising on a gray background",
            [("square", "blue", "rotating"), ("triangle", "green", "moving up")],
            {"kind": "solid", "colors": ["gray"]},
        ),
        (
            "a red circle, a blue spinning square",
            [("circle", "red", None), ("square", "blue", "rotating")],
            {"kind": "black", "colors": ["black"]},
        ),
        (
            "a yellow ball, against a horizontal navy to black gradient",
            [("circle", "yellow", None)],
            {"kind": "gradient", "colors": ["navy", "black"], "direction": "horizontal"},
        ),
    ],
)
def test_parse_caption_reads_simple_prompts(prompt, objects, background):
    expected = [{"shape": s, "color": c, "motion": m} for s, c, m in objects]
    assert parse_caption(prompt) == {"objects": expected, "background": background}


@pytest.mark.parametrize(
    ("table", "values"), [(COLOR_PHRASES, COLORS), (SHAPE_PHRASES, SHAPES), (MOTION_PHRASES, MOTIONS)]
)
def test_each_value_has_five_phrasings(table, values):
    assert set(table) == set(values)
    assert all(len(set(phrases)) >= 5 for phrases in table.values())


def test_color_phrasings_keep_the_color_word():
    assert all(color in phrase for color, phrases in COLOR_PHRASES.items() for phrase in phrases)


def test_ground_truth_center_and_size_match_the_pixels(single_on_black):
    ys, xs = np.mgrid[:64, :64]
    for clip in single_on_black:
        obj = clip.objects[0]
        coverage = clip.frames.astype(float).sum(axis=-1) / sum(COLORS[obj.color])
        for i, weight in enumerate(coverage):
            area = weight.sum()
            assert abs((weight * xs).sum() / area - obj.cx[i]) < 1.0
            assert abs((weight * ys).sum() / area - obj.cy[i]) < 1.0
            assert area == pytest.approx(expected_area(obj.shape, obj.size[i]), rel=0.2), obj.shape


def test_ground_truth_is_json_with_per_frame_tracks(world):
    truth = json.loads(json.dumps(world[0].ground_truth()))
    assert truth["caption"] == world[0].caption and truth["background"] == world[0].background
    for obj in truth["objects"]:
        assert {"shape", "color", "motion"} <= set(obj)
        assert all(len(obj[k]) == 17 for k in ("cx", "cy", "size", "angle"))


def steps(values: np.ndarray) -> np.ndarray:
    """Frame-to-frame changes of a track."""
    return np.diff(values)


def assert_still(*tracks: np.ndarray) -> None:
    """Fail unless every track is constant."""
    for track in tracks:
        assert np.ptp(track) == 0


def test_straight_motions_follow_their_definitions(world):
    groups = by_motion(world)
    for motion, axis, sign in (
        ("moving left", "cx", -1),
        ("moving right", "cx", 1),
        ("moving up", "cy", -1),
        ("moving down", "cy", 1),
    ):
        assert groups[motion], motion
        for obj in groups[motion]:
            track = getattr(obj, axis)
            assert np.all(sign * steps(track) > 0), motion
            assert 0.35 * 64 - 1e-6 <= abs(track[-1] - track[0]) <= 0.55 * 64 + 1e-6
            assert_still(obj.cy if axis == "cx" else obj.cx, obj.size, obj.angle)


def test_diagonal_motion_moves_equally_on_both_axes(world):
    directions = set()
    for obj in by_motion(world)["moving diagonally"]:
        dx, dy = steps(obj.cx), steps(obj.cy)
        assert np.all(np.abs(dx) > 0) and np.allclose(np.abs(dx), np.abs(dy))
        directions.add((np.sign(dx[0]), np.sign(dy[0])))
        assert_still(obj.size, obj.angle)
    assert len(directions) == 4


def test_bouncing_reverses_vertically_like_a_ball(world):
    for obj in by_motion(world)["bouncing"]:
        dy = steps(obj.cy)
        signs = np.sign(dy[dy != 0])
        assert np.any(signs[1:] != signs[:-1])
        assert obj.cy[0] == obj.cy.max()  # starts on the floor, then goes up
        assert np.ptp(obj.cy) >= 0.3 * 64
        assert_still(obj.cx, obj.size, obj.angle)


@pytest.mark.parametrize(("motion", "sign"), [("growing", 1), ("shrinking", -1)])
def test_size_changes_monotonically_by_the_stated_factor(world, motion, sign):
    for obj in by_motion(world)[motion]:
        assert np.all(sign * steps(obj.size) > 0)
        assert 1.6 - 1e-9 <= obj.size.max() / obj.size.min() <= 2.2 + 1e-9
        assert_still(obj.cx, obj.cy, obj.angle)


def test_rotation_turns_visibly_and_unwrappably(world):
    for obj in by_motion(world)["rotating"]:
        turn = steps(obj.angle)
        period = 90.0 if obj.shape == "square" else 120.0
        assert np.all(np.sign(turn) == np.sign(turn[0])) and np.all(np.abs(turn) < period / 4)
        assert 60.0 - 1e-9 <= abs(obj.angle[-1] - obj.angle[0]) <= 120.0 + 1e-9
        assert_still(obj.cx, obj.cy, obj.size)


def test_still_objects_do_not_change(world):
    for obj in by_motion(world)["staying still"]:
        assert_still(obj.cx, obj.cy, obj.size, obj.angle)


@pytest.mark.parametrize(("width", "height"), [(64, 64), (96, 48)])
def test_objects_stay_inside_the_frame(width, height):
    for clip in clips(ShapesConfig(width=width, height=height, split="all"), num=150):
        for obj in clip.objects:
            reach = obj.reach()
            assert np.all(obj.cx - reach >= 0) and np.all(obj.cx + reach <= width - 1)
            assert np.all(obj.cy - reach >= 0) and np.all(obj.cy + reach <= height - 1)


def test_border_pixels_stay_background(single_on_black):
    for clip in single_on_black:
        border = np.concatenate(
            [clip.frames[:, 0], clip.frames[:, -1], clip.frames[:, :, 0], clip.frames[:, :, -1]]
        )
        assert border.max() == 0


def test_two_objects_have_distinct_colors_and_never_overlap(world):
    pairs = [clip for clip in world if len(clip.objects) == 2]
    assert len(pairs) > 50
    black = {"kind": "black", "colors": ["black"]}
    for clip in pairs:
        a, b = clip.objects
        assert a.color != b.color
        mask_a = render([a], black, 64, 64).max(axis=-1) > 0
        mask_b = render([b], black, 64, 64).max(axis=-1) > 0
        assert not np.any(mask_a & mask_b)


def combos(clip: ShapesClip) -> list[str]:
    """The clip's objects as "shape/color/motion" strings."""
    return [f"{o.shape}/{o.color}/{o.motion}" for o in clip.objects]


def test_train_split_never_shows_a_held_out_combo():
    config = ShapesConfig(split="train")
    assert config.held_out
    assert not any(set(combos(clip)) & set(config.held_out) for clip in clips(config))


def test_test_split_always_shows_a_held_out_combo_first():
    config = ShapesConfig(split="test", held_out=["square/white/shrinking", "triangle/cyan/rotating"])
    firsts = [combos(clip)[0] for clip in clips(config, num=100)]
    assert set(firsts) == set(config.held_out)


def test_all_split_does_show_held_out_combos(world):
    held_out = set(ShapesConfig().held_out)
    assert any(set(combos(clip)) & held_out for clip in world)


@pytest.mark.parametrize(
    ("width", "height", "frames", "fps"), [(96, 48, 5, 30.0), (64, 64, 1, 8.0), (33, 17, 9, 2.5)]
)
def test_other_sizes_lengths_and_rates(width, height, frames, fps):
    config = ShapesConfig(width=width, height=height, frames=frames, fps=fps, split="all")
    for clip in clips(config, num=40):
        assert clip.frames.shape == (frames, height, width, 3) and clip.fps == fps
        assert all(len(obj.cx) == frames for obj in clip.objects)
        assert clip.frames.max() > 0


def test_gradient_runs_from_the_first_color_to_the_second():
    vertical = background_image(
        {"kind": "gradient", "colors": ["navy", "black"], "direction": "vertical"}, 20, 16
    )
    assert tuple(vertical[0, 5]) == BACKGROUNDS["navy"] and tuple(vertical[-1, 5]) == (0, 0, 0)
    horizontal = background_image(
        {"kind": "gradient", "colors": ["gray", "brown"], "direction": "horizontal"}, 20, 16
    )
    assert tuple(horizontal[3, 0]) == BACKGROUNDS["gray"] and tuple(horizontal[3, -1]) == BACKGROUNDS["brown"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"frames": 0}, "frames"),
        ({"width": 8}, "width"),
        ({"fps": 0.0}, "fps"),
        ({"max_objects": 3}, "max_objects"),
        ({"split": "val"}, "split must be one of train, test, all"),
        ({"background_weights": [1.0, 0.0]}, "background_weights"),
        ({"background_weights": [0.0, 0.0, 0.0]}, "background_weights"),
        ({"held_out": ["hexagon/red/growing"]}, "unknown shape 'hexagon'; valid: circle, square, triangle"),
        ({"held_out": ["circle/pink/growing"]}, "unknown color 'pink'"),
        ({"held_out": ["circle/red/flying"]}, "unknown motion 'flying'"),
        ({"held_out": ["circle/red"]}, "shape/color/motion"),
        ({"held_out": ["circle/red/rotating"]}, "rotating circle"),
        ({"split": "test", "held_out": []}, "held_out"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        ShapesConfig(**overrides)


def test_synthesize_writes_clips_ground_truth_and_manifest(tmp_path):
    config = ShapesConfig(split="all")
    manifest = synthesize(tmp_path, 6, config, seed=5, progress=False)
    records = read_manifest(manifest)
    assert len(records) == 6 and len(list((tmp_path / "clips").glob("*.mp4"))) == 6
    for i, record in enumerate(records):
        assert record.path == f"clips/shapes_{i:06d}.mp4"
        frames, fps = read_video(tmp_path / record.path)
        assert frames.shape == (17, 64, 64, 3) and fps == pytest.approx(8.0)
        truth = json.loads((tmp_path / record.meta["ground_truth"]).read_text())
        clip = make_clip(config, i, seed=5)
        assert record.caption == truth["caption"] == clip.caption
        assert truth["objects"] == clip.ground_truth()["objects"]
        assert record.meta["objects"] == [
            {k: o[k] for k in ("shape", "color", "motion")} for o in truth["objects"]
        ]
        assert (record.meta["seed"], record.meta["index"], record.meta["split"]) == (5, i, "all")
        assert np.abs(frames.astype(int) - clip.frames).mean() < 3  # H.264 at crf 18 is close to lossless


def test_synthesize_resumes_without_re_encoding(tmp_path):
    config = ShapesConfig()
    manifest = synthesize(tmp_path, 6, config, progress=False)
    first_text = manifest.read_text()
    files = sorted((tmp_path / "clips").glob("*.mp4")) + sorted((tmp_path / "ground_truth").glob("*.json"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    (tmp_path / "clips" / "shapes_000002.mp4").unlink()
    synthesize(tmp_path, 6, config, progress=False)
    assert manifest.read_text() == first_text
    changed = {f.name for f in files if f.stat().st_mtime_ns != mtimes[f]}
    assert changed == {"shapes_000002.mp4", "shapes_000002.json"}


def test_synthesize_redoes_clips_made_with_another_config(tmp_path):
    synthesize(tmp_path, 2, ShapesConfig(), progress=False)
    manifest = synthesize(tmp_path, 2, ShapesConfig(frames=5), progress=False)
    assert all(r.num_frames == 5 for r in read_manifest(manifest))
    assert read_video(tmp_path / "clips" / "shapes_000000.mp4")[0].shape[0] == 5


def test_synthesize_rejects_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        synthesize(tmp_path, 1, ShapesConfig(width=65), progress=False)


def test_motion_mix_is_balanced(world):
    counts = Counter(obj.motion for clip in world for obj in clip.objects)
    assert min(counts.values()) >= 0.3 * max(counts.values())
