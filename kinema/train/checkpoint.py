"""Checkpoints that never get lost: atomic writes, keep-last-K, RNG states, and resume.

A checkpoint is one `step_XXXXXXXX.pt` file holding whatever state dicts the loop passes in
(model, EMA, optimizer, scheduler, data position) plus every RNG state, so a resumed run
continues bit for bit.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinema.io import atomic_path

_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_path(folder: str | Path, step: int) -> Path:
    """Where the checkpoint of `step` lives."""
    return Path(folder) / f"step_{step:08d}.pt"


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Finished checkpoints in a folder, oldest first (temp files of a crashed write are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint in a folder, or None."""
    found = list_checkpoints(folder)
    return found[-1] if found else None


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], keep_last: int = 3) -> Path:
    """Write `state` plus RNG states atomically as the checkpoint of `step`; keep the newest `keep_last`."""
    if keep_last < 1:
        raise ValueError(f"keep_last must be at least 1, got {keep_last}")
    path = checkpoint_path(folder, step)
    with atomic_path(path) as tmp:
        torch.save({"step": step, "rng": rng_state(), **state}, tmp)
        with open(tmp, "rb+") as f:  # on disk before the rename, so a power cut can't leave half a file
            os.fsync(f.fileno())
    for old in list_checkpoints(folder)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, restore_rng: bool = True) -> dict[str, Any]:
    """Read a checkpoint on the CPU and, by default, put every RNG back as it was when saved."""
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    if restore_rng:
        set_rng_state(state["rng"])
    return state


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by `rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
