import json

import pytest

from kinema.data.manifest import (
    ClipRecord,
    ManifestError,
    clip_path,
    read_manifest,
    relative_to_manifest,
    write_manifest,
)


def record(**changes) -> dict:
    base = {"path": "clips/a.mp4", "fps": 8.0, "num_frames": 17, "width": 64, "height": 64}
    return base | changes


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_round_trip_keeps_every_field(tmp_path):
    records = [
        ClipRecord(**record(caption="a red circle", meta={"seed": 3})),
        ClipRecord(**record(path="b.mp4", num_frames=3, actions=[0, 2, 1])),
    ]
    path = write_manifest(tmp_path / "m.jsonl", records)
    assert read_manifest(path) == records
    assert "actions" not in path.read_text().splitlines()[0]


def test_blank_lines_are_ignored(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", [record(), "", "   ", record(path="b.mp4")])
    assert [r.path for r in read_manifest(path)] == ["clips/a.mp4", "b.mp4"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (record() | {"fps": 0}, "'fps' must be a positive number"),
        (record() | {"num_frames": 2.5}, "'num_frames' must be a positive integer"),
        (record() | {"width": True}, "'width' must be a positive integer"),
        (record() | {"caption": 3}, "'caption' must be a string"),
        (record() | {"meta": []}, "'meta' must be an object"),
        (record() | {"actions": [1, 2]}, "'actions' has 2 entries but the clip has num_frames=17"),
        (record() | {"colour": "red"}, "unknown key(s) colour"),
        ({"path": "a.mp4", "fps": 8}, "missing required key(s) num_frames, width, height"),
    ],
)
def test_bad_line_names_file_line_and_reason(tmp_path, line, message):
    path = write_lines(tmp_path / "m.jsonl", [record(), line])
    with pytest.raises(ManifestError) as error:
        read_manifest(path)
    assert "m.jsonl:2: " in str(error.value)
    assert message in str(error.value)


def test_missing_manifest_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_is_atomic_and_replaces_the_old_file(tmp_path):
    path = write_manifest(tmp_path / "m.jsonl", [ClipRecord(**record())])
    write_manifest(path, [ClipRecord(**record(path="new.mp4"))])
    assert [r.path for r in read_manifest(path)] == ["new.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_paths_are_relative_to_the_manifest(tmp_path):
    manifest = tmp_path / "set" / "manifest.jsonl"
    inside, outside = tmp_path / "set" / "clips" / "a.mp4", tmp_path / "elsewhere.mp4"
    assert relative_to_manifest(inside, manifest) == "clips/a.mp4"
    assert relative_to_manifest(outside, manifest) == str(outside.resolve())
    assert clip_path(ClipRecord(**record(path="clips/a.mp4")), manifest) == inside
    assert clip_path(ClipRecord(**record(path=str(outside))), manifest) == outside
