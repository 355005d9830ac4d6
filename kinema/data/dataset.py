"""Clips as tensors: a manifest, or the shapes world on the fly, to float (C, T, H, W) in [-1, 1]."""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing as mp
import os
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from kinema.data.manifest import ClipRecord, clip_path, read_manifest
from kinema.data.shapes import ShapesConfig, make_clip
from kinema.io.video import VideoError, read_video

if TYPE_CHECKING:
    from kinema.config import DataConfig

log = logging.getLogger(__name__)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, C) frames to float (C, T, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def to_frames(video: torch.Tensor) -> np.ndarray:
    """Float (C, T, H, W) in [-1, 1] back to uint8 (T, H, W, C) frames."""
    scaled = video.detach().float().add(1.0).mul(127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def resize_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to cover (width, height) keeping the aspect ratio, then crop the centre."""
    _, h, w, _ = frames.shape
    if (w, h) == (width, height):
        return frames
    scale = max(width / w, height / h)
    new_w, new_h = max(width, math.ceil(w * scale - 1e-6)), max(height, math.ceil(h * scale - 1e-6))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    x, y = (new_w - width) // 2, (new_h - height) // 2
    return np.stack(
        [
            cv2.resize(f, (new_w, new_h), interpolation=interpolation)[y : y + height, x : x + width]
            for f in frames
        ]
    )


class ClipDataset(Dataset):
    """Clips from a manifest, `frames` long at `fps`, resized and centre-cropped to width x height.

    A clip that can't be read is skipped for the next readable one, counted in `skipped`, and
    warned about once across all DataLoader workers.
    """

    def __init__(
        self,
        manifest: str | os.PathLike,
        *,
        width: int,
        height: int,
        frames: int,
        fps: float,
        random_start: bool = True,
        seed: int = 0,
    ):
        self.manifest = str(manifest)
        self.records: list[ClipRecord] = read_manifest(manifest)
        self.width, self.height, self.frames, self.fps = width, height, frames, fps
        self.random_start, self.seed, self.epoch = random_start, seed, 0
        # Shared with forked/spawned workers, so a bad file is reported once and then skipped fast.
        self._bad = mp.Array("b", len(self.records))

    def __len__(self) -> int:
        return len(self.records)

    @property
    def skipped(self) -> int:
        """How many distinct clips were found unreadable so far."""
        return sum(self._bad[:])

    def set_epoch(self, epoch: int) -> None:
        """Vary the random clip starts per epoch while keeping them reproducible."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        for offset in range(len(self.records)):
            i = (index + offset) % len(self.records)
            if self._bad[i]:
                continue
            try:
                return self.load(i)
            except VideoError as e:
                self._mark_bad(i, e)
        raise RuntimeError(f"{self.manifest}: none of its {len(self.records)} clips can be read")

    def load(self, index: int) -> dict[str, Any]:
        """Decode and shape one clip; raises VideoError if it can't be read."""
        record = self.records[index]
        path = clip_path(record, self.manifest)
        start = self._start_time(record, index, path)
        frames, _ = read_video(path, num_frames=self.frames, fps=self.fps, start=start)
        item: dict[str, Any] = {
            "video": to_tensor(resize_crop(frames, self.width, self.height)),
            "caption": record.caption,
            "index": index,
        }
        if record.actions is not None:
            source = np.minimum(
                np.round((start + np.arange(self.frames) / self.fps) * record.fps), record.num_frames - 1
            )
            item["actions"] = torch.tensor([record.actions[int(i)] for i in source])
        return item

    def _start_time(self, record: ClipRecord, index: int, path) -> float:
        """When the sampled window starts: random per (seed, epoch, index), or at 0."""
        latest = (record.num_frames - 1) / record.fps - (self.frames - 1) / self.fps
        if latest < -1e-6:
            needed = (self.frames - 1) / self.fps + 1 / record.fps
            raise VideoError(
                path,
                f"too short: {self.frames} frames at {self.fps:g} fps need {needed:.2f} s, clip has {record.num_frames / record.fps:.2f} s",
            )
        if not self.random_start or latest <= 0:
            return 0.0
        return float(np.random.default_rng([self.seed, self.epoch, index]).uniform(0, latest))

    def _mark_bad(self, index: int, error: VideoError) -> None:
        """Record a bad clip, warning only the first time any process sees it."""
        with self._bad.get_lock():
            first = not self._bad[index]
            self._bad[index] = 1
        if first:
            log.warning("skipping unreadable clip %s", error)


class ShapesDataset(Dataset):
    """The shapes world rendered on the fly: item i is clip i of the world with this seed."""

    def __init__(self, config: ShapesConfig, *, length: int = 100_000, seed: int = 0):
        self.config, self.length, self.seed = config, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = make_clip(self.config, index, self.seed)
        return {"video": to_tensor(clip.frames), "caption": clip.caption, "index": index}


def make_dataset(data: DataConfig, *, seed: int = 0, train: bool = True) -> Dataset:
    """The dataset a recipe's `data` section describes."""
    if data.source == "shapes":
        shapes = dataclasses.replace(
            data.shapes, width=data.width, height=data.height, frames=data.frames, fps=data.fps
        )
        return ShapesDataset(shapes, seed=seed)
    return ClipDataset(
        data.source,
        width=data.width,
        height=data.height,
        frames=data.frames,
        fps=data.fps,
        random_start=train,
        seed=seed,
    )


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_workers: int,
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = True,
) -> DataLoader:
    """A seeded DataLoader over `dataset`, with persistent workers when there are any."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator,
        drop_last=drop_last,
    )
