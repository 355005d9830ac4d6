import logging

import numpy as np
import pytest
import torch

from kinema.config import DataConfig
from kinema.data.dataset import (
    ClipDataset,
    ShapesDataset,
    make_dataset,
    make_loader,
    resize_crop,
    to_frames,
    to_tensor,
)
from kinema.data.manifest import ClipRecord, write_manifest
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.io.video import write_video

SOURCE_FPS = 24


def counting_clip(num_frames: int, width: int = 80, height: int = 48) -> np.ndarray:
    """Frame i is flat grey 5*i, with a white bar on the left eighth (cropped away by a square crop)."""
    frames = np.repeat((np.arange(num_frames, dtype=np.uint8) * 5)[:, None, None, None], 3, axis=3)
    frames = np.broadcast_to(frames, (num_frames, height, width, 3)).copy()
    frames[:, :, : width // 8] = 255
    return frames


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Three good clips and three broken ones, in one manifest."""
    root = tmp_path_factory.mktemp("clips")
    records = []
    for i, length in enumerate((48, 40, 36)):
        path = write_video(root / f"good{i}.mp4", counting_clip(length), SOURCE_FPS, crf=0)
        records.append(
            ClipRecord(
                path.name, SOURCE_FPS, length, 80, 48, caption=f"clip {i}", actions=list(range(length))
            )
        )
    (root / "empty.mp4").touch()
    (root / "text.mp4").write_text("not a video at all\n")
    good = (root / "good0.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(good[: len(good) // 2])
    for name in ("empty.mp4", "text.mp4", "cut.mp4"):
        records.insert(2, ClipRecord(name, SOURCE_FPS, 48, 80, 48, caption="broken"))
    return write_manifest(root / "manifest.jsonl", records)


def grey_levels(video: torch.Tensor) -> list[int]:
    """The frame index each frame of a counting clip shows, read off its right half."""
    frames = to_frames(video)
    return [round(v / 5) for v in frames[:, :, frames.shape[2] // 2 :, 0].mean(axis=(1, 2))]


def test_tensor_round_trip():
    frames = np.random.default_rng(0).integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    video = to_tensor(frames)
    assert video.shape == (3, 3, 4, 5) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    np.testing.assert_array_equal(to_frames(video), frames)


def test_resize_crop_keeps_aspect_and_crops_the_centre():
    frames = counting_clip(2, width=80, height=48)
    square = resize_crop(frames, 32, 32)
    assert square.shape == (2, 32, 32, 3)
    # 80x48 -> 54x32, centre 32 columns from x=11: the white bar (first 10 of 80 columns, 7 of 54) is gone.
    assert square[1].max() == 5
    wide = resize_crop(frames, 40, 24)
    assert wide.shape == (2, 24, 40, 3) and wide[0, :, :4].min() == 255


def test_items_have_the_requested_shape_frames_and_actions(manifest):
    dataset = ClipDataset(manifest, width=32, height=32, frames=5, fps=8, random_start=False)
    item = dataset[0]
    assert item["video"].shape == (3, 5, 32, 32)
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    # 24 fps resampled to 8 fps from t=0: source frames 0, 3, 6, 9, 12.
    assert grey_levels(item["video"]) == [0, 3, 6, 9, 12]
    assert item["actions"].tolist() == [0, 3, 6, 9, 12]
    assert item["caption"] == "clip 0"


def test_random_starts_are_reproducible_and_vary_by_epoch(manifest):
    dataset = ClipDataset(manifest, width=32, height=32, frames=4, fps=8, seed=1)
    first = grey_levels(dataset[0]["video"])
    assert grey_levels(dataset[0]["video"]) == first
    assert np.diff(first).tolist() == [3, 3, 3]
    assert dataset[0]["actions"].tolist() == first
    starts = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        starts.add(grey_levels(dataset[0]["video"])[0])
    assert len(starts) > 1


def test_broken_clips_are_skipped_counted_and_warned_once(manifest, caplog):
    dataset = ClipDataset(manifest, width=32, height=32, frames=5, fps=8)
    with caplog.at_level(logging.WARNING, logger="kinema.data.dataset"):
        for _ in range(2):
            captions = [dataset[i]["caption"] for i in range(len(dataset))]
    assert "broken" not in captions
    assert dataset.skipped == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert any("empty" in w for w in warnings) and any("not a video" in w for w in warnings)


def test_a_clip_too_short_for_the_window_is_skipped(manifest):
    dataset = ClipDataset(
        manifest, width=32, height=32, frames=14, fps=8
    )  # spans 1.625 s; clip 2 spans 1.458 s
    captions = [dataset[i]["caption"] for i in range(len(dataset))]
    assert "clip 2" not in captions
    assert dataset.skipped == 4


def test_an_epoch_through_worker_processes(manifest):
    dataset = ClipDataset(manifest, width=32, height=32, frames=5, fps=8)
    loader = make_loader(dataset, batch_size=2, num_workers=2, drop_last=False)
    batches = list(loader)
    assert sum(len(b["caption"]) for b in batches) == len(dataset)
    assert all(b["video"].shape[1:] == (3, 5, 32, 32) for b in batches)
    assert dataset.skipped == 3  # the flags are shared with the workers


def test_shapes_dataset_renders_the_world_on_the_fly():
    config = ShapesConfig(width=32, height=32, frames=5)
    dataset = ShapesDataset(config, length=10, seed=3)
    item = dataset[4]
    assert len(dataset) == 10
    assert item["video"].shape == (3, 5, 32, 32)
    clip = make_clip(config, 4, 3)
    np.testing.assert_array_equal(to_frames(item["video"]), clip.frames)
    assert item["caption"] == clip.caption


def test_make_dataset_follows_the_data_section(manifest):
    shapes = make_dataset(DataConfig(width=48, height=32, frames=3))
    assert shapes[0]["video"].shape == (3, 3, 32, 48)
    clips = make_dataset(DataConfig(source=str(manifest), width=32, height=32, frames=3), train=False)
    assert isinstance(clips, ClipDataset) and clips[0]["video"].shape == (3, 3, 32, 32)
