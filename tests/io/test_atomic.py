"""kinema.io.atomic on real files: a target is either its old self or fully written, never half."""

from __future__ import annotations

import stat

import pytest

from kinema.io import atomic_path, atomic_write_text


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_text_replaces_whole_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("a much longer first version\n" * 100)
    assert atomic_write_text(target, "short ✓\n") == target
    assert target.read_text(encoding="utf-8") == "short ✓\n"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_text_creates_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "notes.txt"
    atomic_write_text(target, "hi")
    assert target.read_text() == "hi"


def test_atomic_write_text_gives_normal_permissions(tmp_path):
    """The result has the mode a plain open() would give (umask applied), not mkstemp's 0600."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    target = atomic_write_text(tmp_path / "atomic.txt", "x")
    assert oct(mode(target)) == oct(mode(plain))


def test_atomic_path_gives_normal_permissions_to_writers_that_replace_the_file(tmp_path):
    """safetensors' save_file replaces the temp file with a 0600 one; the saved weights still get the usual mode."""
    import torch
    from safetensors.torch import save_file

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with atomic_path(tmp_path / "model.safetensors") as tmp:
        save_file({"weight": torch.zeros(2)}, str(tmp))
    assert oct(mode(tmp_path / "model.safetensors")) == oct(mode(plain))


def test_atomic_path_writes_beside_target_and_renames_on_success(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".mp4", "writers that pick a format by extension need the suffix"
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
    assert list(tmp_path.iterdir()) == [target]


def test_failure_inside_atomic_path_keeps_old_file(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder died"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half-written new")
        raise RuntimeError("encoder died")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_failure_inside_atomic_path_creates_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "clip.mp4") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
