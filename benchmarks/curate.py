"""Curation speed: seconds of video curated per wall second, ours against a book-style naive pipeline.

Both sides get the same files (testsrc2 | mandelbrot | life, joined, so each file has three scenes),
the same two worker processes over files, the same measurements at the same sampling rate, and the
same re-encode of every scene (kinema's normalize). The difference is how frames are read:

- ours (`kinema data curate`): every file is decoded once, by PyAV, scaled to 256 px wide while it
  is converted, and that one pass feeds scene detection and every quality signal;
- naive (the book's chapter 2 style): each stage opens the file with OpenCV and decodes every frame
  at full size again: scene detection (PySceneDetect's OpenCV backend, no downscaling), then
  sharpness, motion (Farnebäck), black/frozen frames, letterbox bars and pHashes, measured at full size.

The two alternate, `--repeats` times per resolution, so machine noise hits both alike; the best
time of each is reported, with the ratio.

    python benchmarks/curate.py                     # 360p and 720p, 4 files of 12 s each
    python benchmarks/curate.py --files 2 --seconds 6
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import imagehash
import imageio_ffmpeg
from PIL import Image
from scenedetect import ContentDetector, SceneManager, open_video

from kinema.data.curate import CurateRecipe, curate
from kinema.data.curate.normalize import normalize_scene
from kinema.data.curate.quality import FARNEBACK
from kinema.data.curate.recipe import QualityGates

FPS = 25
SOURCES = 3  # lavfi sources joined in each file
NO_BARS = {"top": 0.0, "bottom": 0.0, "left": 0.0, "right": 0.0}


def make_videos(folder: Path, size: str, count: int, seconds: float) -> list[Path]:
    """`count` H.264 files of `seconds`, each three lavfi sources joined (two cuts)."""
    folder.mkdir(parents=True, exist_ok=True)
    part = seconds / SOURCES
    paths = []
    for i in range(count):
        # Each file differs (a later stretch of testsrc2, another zoom, another seed), so none is a duplicate.
        sources = (
            f"testsrc2=size={size}",
            f"mandelbrot=size={size}:start_scale={3 + i}",
            f"life=size={size}:seed={i}",
        )
        inputs = []
        for source in sources:
            inputs += ["-f", "lavfi", "-ss", f"{3 * i}", "-t", f"{part}", "-i", f"{source}:rate={FPS}"]
        joined = (
            ";".join(f"[{k}]format=yuv420p,setsar=1[v{k}]" for k in range(3)) + ";[v0][v1][v2]concat=n=3:v=1"
        )
        path = folder / f"video_{i}.mp4"
        subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *inputs,
             "-filter_complex", joined, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(path)],
            check=True,
        )  # fmt: skip
        paths.append(path)
    return paths


def every_frame(path: Path):
    """OpenCV decoding every frame at full size: what each naive stage does."""
    capture = cv2.VideoCapture(str(path))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        yield frame
    capture.release()


def naive_file(path: Path, out: Path, recipe: CurateRecipe) -> int:
    """One file through the book-style pipeline; returns its scene count."""
    cv2.setNumThreads(1)
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    every = max(1, round(fps / recipe.analysis.sample_fps))
    video = open_video(str(path), backend="opencv")
    manager = SceneManager()
    manager.auto_downscale, manager.downscale = False, 1
    manager.add_detector(
        ContentDetector(threshold=recipe.analysis.threshold, min_scene_len=recipe.analysis.min_scene_len)
    )
    manager.detect_scenes(video)
    scenes = manager.get_scene_list(start_in_scene=True)
    grays = lambda: (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in every_frame(path))  # noqa: E731
    _ = [cv2.Laplacian(g, cv2.CV_64F).var() for i, g in enumerate(grays()) if i % every == 0]
    previous = None
    for i, gray in enumerate(grays()):
        if i % every == 0:
            if previous is not None:
                cv2.calcOpticalFlowFarneback(previous, gray, None, *FARNEBACK)
            previous = gray
    previous = None
    for gray in grays():
        _ = gray.mean(), (cv2.absdiff(gray, previous).mean() if previous is not None else 0.0)
        previous = gray
    _ = [(g.mean(axis=1), g.mean(axis=0)) for i, g in enumerate(grays()) if i % every == 0]
    _ = [str(imagehash.phash(Image.fromarray(g))) for i, g in enumerate(grays()) if i % every == 0]
    for n, (start, end) in enumerate(scenes):
        target = out / f"{path.stem}_{n}.mp4"
        normalize_scene(path, start.seconds, end.seconds, NO_BARS, recipe.normalize, target)
    return len(scenes)


def run_naive(paths: list[Path], out: Path, recipe: CurateRecipe) -> tuple[float, int]:
    """(seconds, scenes) for the naive pipeline over a pool of `recipe.workers` processes."""
    out.mkdir(parents=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(recipe.workers) as pool:
        scenes = sum(pool.map(naive_file, paths, [out] * len(paths), [recipe] * len(paths)))
    return time.perf_counter() - started, scenes


def run_ours(paths: list[Path], out: Path, recipe: CurateRecipe) -> tuple[float, int]:
    """(seconds, clips written) for `kinema data curate`, from an empty output folder (no cache)."""
    started = time.perf_counter()
    result = curate([str(p) for p in paths], out, recipe, progress=False)
    return time.perf_counter() - started, dict(result.funnel)["clips written"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4, help="files per resolution (default 4)")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds per file (default 12)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="processes on each side (default 2)")
    args = parser.parse_args()
    recipe = CurateRecipe(workers=args.workers)
    # Open every quality gate, so both sides re-encode the same scenes.
    recipe.quality = QualityGates(0.0, 0.0, 0.0, math.inf, math.inf, 1.0, 1.0, 1.0)
    root = Path(tempfile.mkdtemp(prefix="kinema-curate-bench-"))
    try:
        print(f"{args.files} files x {args.seconds:g} s at {FPS} fps per resolution, {args.workers} workers")
        print(
            f"{'size':>9} {'ours s':>8} {'naive s':>8} {'ours video-s/s':>15} {'naive video-s/s':>16} {'ratio':>6}"
        )
        for name, size in (("360p", "640x360"), ("720p", "1280x720")):
            paths = make_videos(root / name, size, args.files, args.seconds)
            ours, naive = [], []
            for k in range(args.repeats):
                ours.append(run_ours(paths, root / f"ours_{name}_{k}", recipe))
                naive.append(run_naive(paths, root / f"naive_{name}_{k}", recipe))
            (t_ours, clips), (t_naive, scenes) = min(ours), min(naive)
            video = args.files * args.seconds
            print(
                f"{name:>9} {t_ours:8.2f} {t_naive:8.2f} {video / t_ours:15.2f} {video / t_naive:16.2f} "
                f"{t_naive / t_ours:5.2f}x   (scenes: ours {clips}, naive {scenes})"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
