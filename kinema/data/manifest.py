"""The manifest: one JSON line per clip, shared by curation, game recording and training.

A record's `path` is stored relative to the manifest's folder when it lies inside it, so a
folder of clips plus its manifest can be moved or copied as a unit.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kinema.errors import KinemaError
from kinema.io.atomic import atomic_write_text

REQUIRED = ("path", "fps", "num_frames", "width", "height")
OPTIONAL = ("caption", "actions", "meta")


class ManifestError(KinemaError):
    """A manifest line that is not a valid clip record."""


@dataclass
class ClipRecord:
    """One clip: where it is, what it shows, and its per-frame actions if it came from a game."""

    path: str
    fps: float
    num_frames: int
    width: int
    height: int
    caption: str = ""
    actions: list[Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    def to_json(self) -> str:
        """One JSON line; optional fields are left out when empty."""
        data = asdict(self)
        if self.actions is None:
            del data["actions"]
        if not self.meta:
            del data["meta"]
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _problem(r: ClipRecord) -> str | None:
    """The first thing wrong with a record, or None."""
    if not isinstance(r.path, str) or not r.path:
        return "'path' must be a non-empty string"
    if (
        isinstance(r.fps, bool)
        or not isinstance(r.fps, int | float)
        or not math.isfinite(r.fps)
        or r.fps <= 0
    ):
        return f"'fps' must be a positive number, got {r.fps!r}"
    for key in ("num_frames", "width", "height"):
        value = getattr(r, key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            return f"'{key}' must be a positive integer, got {value!r}"
    if not isinstance(r.caption, str):
        return f"'caption' must be a string, got {type(r.caption).__name__}"
    if not isinstance(r.meta, dict):
        return f"'meta' must be an object, got {type(r.meta).__name__}"
    if r.actions is not None:
        if not isinstance(r.actions, list):
            return f"'actions' must be a list, got {type(r.actions).__name__}"
        if len(r.actions) != r.num_frames:
            return f"'actions' has {len(r.actions)} entries but the clip has num_frames={r.num_frames}"
    return None


def parse_record(line: str) -> ClipRecord:
    """Parse and validate one manifest line; raises ValueError saying what is wrong."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ValueError(f"missing required key(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(REQUIRED + OPTIONAL)} "
            "(put anything else under 'meta')"
        )
    return ClipRecord(**data)


def read_manifest(path: str | os.PathLike) -> list[ClipRecord]:
    """Read and validate a manifest; an error names the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(parse_record(line))
            except ValueError as e:
                raise ManifestError(f"{path}:{lineno}: {e}") from None
    return records


def write_manifest(path: str | os.PathLike, records: Iterable[ClipRecord]) -> Path:
    """Write records as JSON lines, atomically, and return the path."""
    text = "".join(r.to_json() + "\n" for r in records)
    return atomic_write_text(path, text)


def clip_path(record: ClipRecord, manifest_path: str | os.PathLike) -> Path:
    """The clip's file, with a relative path taken from the manifest's folder."""
    p = Path(record.path)
    return p if p.is_absolute() else Path(manifest_path).parent / p


def relative_to_manifest(file: str | os.PathLike, manifest_path: str | os.PathLike) -> str:
    """The string to store as `path`: relative when the file lies under the manifest's folder."""
    file, root = Path(file).resolve(), Path(manifest_path).resolve().parent
    return file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
