"""`kinema data curate`: a folder of messy videos in, a clean training manifest out, every decision logged.

    gather inputs -> analyse each file (pool)  -> decide            -> normalize (pool) -> captions -> write
                     probe, one decode feeding    probe gates, exact    accepted scenes     sidecar/     clips/, manifest.jsonl,
                     scene cuts + quality         duplicates, quality,  to fps/size/H.264   captioner,   audit.jsonl, report.html
                     signals, per-scene pHashes   near-duplicates                           balancing

`analyze_file` is a pure function of one file and the analysis options, and its result is cached
under OUT/.cache by the file's content hash: a re-run (after a crash, or with other thresholds)
skips every file already analysed, and the same inputs always give the same manifest.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kinema.data.curate.captions import balance_concepts, caption_embeddings, file_caption, load_captioner
from kinema.data.curate.dedup import find_duplicates
from kinema.data.curate.normalize import normalize_scene
from kinema.data.curate.probe import probe_file, probe_problem, rejection
from kinema.data.curate.quality import FrameSignals, quality_problem, scene_hashes, scene_measurements
from kinema.data.curate.recipe import CurateRecipe
from kinema.data.curate.report import write_curation_report
from kinema.data.curate.scenes import CutFinder, scene_ranges
from kinema.data.manifest import ClipRecord, clip_path, read_manifest, write_manifest
from kinema.errors import KinemaError
from kinema.io.atomic import atomic_write_text
from kinema.io.video import VideoError, iter_frames, read_video

VIDEO_SUFFIXES = {
    ".mp4",
    ".mov",
    ".mkv",
    ".avi",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".ts",
    ".flv",
    ".wmv",
    ".y4m",
}
THUMB_WIDTH = 128


@dataclass
class CurateResult:
    """What a run did: where its outputs are and how many items passed each stage."""

    out: Path
    manifest: Path
    audit: Path
    report: Path
    funnel: list[tuple[str, int]]
    analysed: int = 0
    from_cache: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def gather_inputs(inputs: Sequence[str], exclude: Path | None = None) -> list[Path]:
    """Files named by folders (searched for video suffixes), globs, manifests or paths; sorted, unique."""
    found: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found |= {p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES}
        elif path.suffix == ".jsonl" and path.is_file():
            found |= {clip_path(r, path) for r in read_manifest(path)}
        elif path.exists() or path.is_symlink():
            found.add(path)
        elif glob.has_magic(item):
            found |= {Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file()}
        else:
            raise KinemaError(f"input '{item}' does not exist")
    files = sorted({p.resolve() for p in found})
    if exclude is not None:
        files = [p for p in files if exclude.resolve() not in p.parents]
    if not files:
        raise KinemaError(f"no video files found in {', '.join(inputs)}")
    return files


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def analyze_file(path: str | Path, recipe: CurateRecipe) -> dict:
    """Probe one file, and unless it fails the probe gates decode it once into scenes and measurements."""
    path = str(path)
    result = {
        "analysis_key": recipe.analysis.key(),
        "probe": None,
        "reject": None,
        "decoded": False,
        "scenes": [],
    }
    try:
        info, result["reject"] = probe_file(path)
        result["probe"] = info
        if info is None or probe_problem(info, recipe.probe):
            return result
        result["scenes"], result["decoded"] = _decode_and_measure(path, info, recipe), True
    except VideoError as e:
        result["reject"] = rejection(
            "analysis", "truncated" if "truncated" in e.reason else "corrupt", e.reason
        )
    except Exception as e:  # one bad file must never stop a batch; the audit says why
        result["reject"] = rejection("analysis", "failed", f"{type(e).__name__}: {e}")
    return result


def _decode_and_measure(path: str, info: dict, recipe: CurateRecipe) -> list[dict]:
    options = recipe.analysis
    cuts, signals = CutFinder(options, info["fps"]), FrameSignals(options, info["fps"])
    # A small JPEG about once a second, so a long file's thumbnails stay a few MB.
    thumbs: dict[int, str] = {}
    thumb_every = max(1, round(info["fps"]))
    for index, frame in enumerate(iter_frames(path, max_width=options.width, format="bgr24")):
        cuts.feed(frame)
        signals.feed(frame)
        if index % thumb_every == 0:
            thumbs[index] = _jpeg_base64(frame)
    if not signals.luma:
        raise VideoError(path, "no decodable video frames")
    scenes = []
    for number, (start, end) in enumerate(scene_ranges(cuts.cuts(), len(signals.luma))):
        middle = min(thumbs, key=lambda f: abs(f - (start + end) / 2), default=None)
        scenes.append(
            {
                "scene": number,
                "start": start,
                "end": end,
                "start_s": start / info["fps"],
                "end_s": end / info["fps"],
                "measurements": scene_measurements(signals, start, end),
                "hashes": scene_hashes(signals, start, end, options.hash_samples),
                "thumb": thumbs[middle] if middle is not None else "",
            }
        )
    return scenes


def _jpeg_base64(frame_bgr: np.ndarray) -> str:
    height = max(2, round(frame_bgr.shape[0] * THUMB_WIDTH / frame_bgr.shape[1]))
    small = cv2.resize(frame_bgr, (THUMB_WIDTH, height), interpolation=cv2.INTER_AREA)
    return base64.b64encode(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()).decode()


def _analyze_cached(path: Path, cache: Path, recipe: CurateRecipe) -> tuple[str, dict, bool]:
    """(digest, analysis, whether it came from the cache) for one file; runs in a worker process."""
    cv2.setNumThreads(1)
    digest = file_digest(path)
    entry = cache / f"{digest}.json"
    if entry.is_file():
        cached = json.loads(entry.read_text())
        fresh_enough = (
            cached["decoded"] or cached["probe"] is None or probe_problem(cached["probe"], recipe.probe)
        )
        if cached["analysis_key"] == recipe.analysis.key() and fresh_enough:
            return digest, cached, True
    result = analyze_file(path, recipe)
    atomic_write_text(entry, json.dumps(result))
    return digest, result, False


def curate(
    inputs: Sequence[str], out: str | os.PathLike, recipe: CurateRecipe | None = None, progress: bool = True
) -> CurateResult:
    """Run every stage over `inputs` and write clips/, manifest.jsonl, audit.jsonl and report.html to `out`."""
    recipe = recipe or CurateRecipe()
    out = Path(out)
    files = gather_inputs(inputs, exclude=out)
    cache = out / ".cache"
    (cache / "clips").mkdir(parents=True, exist_ok=True)
    if recipe.captions.captioner:
        load_captioner(recipe.captions.captioner)  # fail now, not after an hour of analysis
    analyses, from_cache = _analyze_all(files, cache, recipe, progress)
    files_audit, scenes = _decide(files, analyses, recipe)
    _normalize_all(scenes, out, recipe, progress)
    _caption(scenes, out, recipe)
    records = [_record(s, out) for s in scenes if s["decision"] == "accepted"]
    manifest = write_manifest(out / "manifest.jsonl", records)
    _remove_stale_clips(out, {r.path for r in records})
    # The audit keeps every measurement and decision; thumbnails go to the report only.
    lines = (json.dumps({k: v for k, v in a.items() if k != "thumb"}) + "\n" for a in files_audit + scenes)
    audit = atomic_write_text(out / "audit.jsonl", "".join(lines))
    funnel = _funnel(files_audit, scenes)
    report = write_curation_report(out / "report.html", funnel, files_audit, scenes, recipe)
    reasons = Counter(a["reason"] for a in files_audit + scenes if a["decision"] == "rejected")
    return CurateResult(
        out, manifest, audit, report, funnel, len(files) - from_cache, from_cache, dict(reasons)
    )


def _analyze_all(files: list[Path], cache: Path, recipe: CurateRecipe, progress: bool) -> tuple[dict, int]:
    """Each file's (digest, analysis), over a process pool, with a progress bar."""
    analyses, from_cache = {}, 0
    bar = tqdm(total=len(files), desc="analyse", unit="file", disable=not progress)
    with ProcessPoolExecutor(max_workers=min(recipe.workers, len(files))) as pool:
        jobs = {pool.submit(_analyze_cached, path, cache, recipe): path for path in files}
        for job in as_completed(jobs):
            digest, analysis, cached = job.result()
            analyses[jobs[job]] = (digest, analysis)
            from_cache += cached
            bar.update()
    bar.close()
    return analyses, from_cache


def _decide(files: list[Path], analyses: dict, recipe: CurateRecipe) -> tuple[list[dict], list[dict]]:
    """Audit entries for every file and every scene, with each one's decision and reason."""
    files_audit, scenes, first_with_digest = [], [], {}
    for path in files:
        digest, analysis = analyses[path]
        info = analysis["probe"]
        reject = analysis["reject"] or (info and probe_problem(info, recipe.probe))
        if reject is None and digest in first_with_digest:
            reject = rejection("dedup", "exact_duplicate", f"same bytes as {first_with_digest[digest]}")
        first_with_digest.setdefault(digest, str(path))
        files_audit.append(
            {
                "type": "file",
                "path": str(path),
                "sha256": digest,
                "probe": info,
                "scenes": len(analysis["scenes"]),
            }
            | _decision(reject)
        )
        if reject is None:
            scenes += [_scene_entry(path, digest, info, s, recipe) for s in analysis["scenes"]]
    _mark_near_duplicates(scenes, recipe)
    return files_audit, scenes


def _decision(reject: dict | None) -> dict:
    if reject is None:
        return {"decision": "accepted", "stage": None, "reason": None, "detail": None}
    return {"decision": "rejected", **reject}


def _scene_entry(path: Path, digest: str, info: dict, scene: dict, recipe: CurateRecipe) -> dict:
    entry = {
        "type": "scene",
        "path": str(path),
        "sha256": digest,
        "id": f"{digest[:16]}_{scene['scene']:03d}",
    }
    entry |= {
        k: scene[k] for k in ("scene", "start", "end", "start_s", "end_s", "measurements", "hashes", "thumb")
    }
    entry["score"] = [info["width"] * info["height"], info["bitrate"], scene["measurements"]["sharpness"]]
    return entry | _decision(quality_problem(scene["measurements"], recipe.quality))


def _mark_near_duplicates(scenes: list[dict], recipe: CurateRecipe) -> None:
    """Reject all but the best copy among near-duplicate accepted scenes."""
    accepted = {s["id"]: s for s in scenes if s["decision"] == "accepted"}
    signatures = {i: s["hashes"] for i, s in accepted.items()}
    duplicates = find_duplicates(
        signatures, lambda i: tuple(accepted[i]["score"]), recipe.dedup.min_similarity
    )
    for scene_id, (kept, similarity) in duplicates.items():
        kept_scene = accepted[kept]
        detail = (
            f"similarity {similarity:.3f} to {kept_scene['path']} scene {kept_scene['scene']}, kept as better"
        )
        accepted[scene_id] |= _decision(rejection("dedup", "near_duplicate", detail))


def _normalize_all(scenes: list[dict], out: Path, recipe: CurateRecipe, progress: bool) -> None:
    """Re-encode accepted scenes into out/clips (reusing ones already made with the same options)."""
    key = recipe.normalize.key()
    todo = []
    for s in scenes:
        if s["decision"] != "accepted":
            continue
        s["clip"] = f"clips/{s['id']}.mp4"
        entry = _clip_entry(out, s)
        if entry.is_file() and (out / s["clip"]).is_file():
            cached = json.loads(entry.read_text())
            if cached.get("key") == key:
                s["video"] = cached["video"]
                continue
        todo.append(s)
    bar = tqdm(total=len(todo), desc="normalize", unit="clip", disable=not progress or not todo)
    with ProcessPoolExecutor(max_workers=max(1, min(recipe.workers, len(todo)))) as pool:
        jobs = {pool.submit(_normalize_one, s, out, recipe): s for s in todo}
        for job in as_completed(jobs):
            scene = jobs[job]
            video, problem = job.result()
            if problem:
                scene |= _decision(rejection("normalize", "failed", problem))
            else:
                scene["video"] = video
                atomic_write_text(_clip_entry(out, scene), json.dumps({"key": key, "video": video}))
            bar.update()
    bar.close()


def _clip_entry(out: Path, scene: dict) -> Path:
    """The cache entry saying which normalize options made a scene's clip."""
    return out / ".cache" / "clips" / f"{scene['id']}.json"


def _normalize_one(scene: dict, out: Path, recipe: CurateRecipe) -> tuple[dict | None, str | None]:
    cv2.setNumThreads(1)
    bars = scene["measurements"]["letterbox"]
    try:
        video = normalize_scene(
            scene["path"],
            scene["start_s"],
            scene["end_s"],
            bars,
            recipe.normalize,
            out / scene["clip"],
        )
        return video, None
    except Exception as e:  # a scene that can't be re-encoded is rejected; the batch goes on
        return None, f"{type(e).__name__}: {e}"


def _caption(scenes: list[dict], out: Path, recipe: CurateRecipe) -> None:
    """Caption accepted scenes, then cap each caption cluster when balancing is on."""
    accepted = [s for s in scenes if s["decision"] == "accepted"]
    captioner = load_captioner(recipe.captions.captioner) if recipe.captions.captioner else None
    for s in accepted:
        if captioner is None:
            s["caption"], s["caption_source"] = file_caption(s["path"])
            continue
        frames, fps = read_video(out / s["clip"])
        s["caption"], s["caption_source"] = str(captioner(frames, fps, s["path"])).strip(), "captioner"
    if recipe.captions.balance and accepted:
        embeddings = caption_embeddings([s["caption"] for s in accepted])
        scores = [s["measurements"]["sharpness"] for s in accepted]
        labels, keep = balance_concepts(
            embeddings, scores, recipe.captions.clusters, recipe.captions.max_per_cluster
        )
        for s, label, kept in zip(accepted, labels, keep, strict=False):
            s["cluster"] = int(label)
            if not kept:
                detail = f"cluster {label} already has {recipe.captions.max_per_cluster} better clips"
                s |= _decision(rejection("balance", "concept_cap", detail))


def _record(scene: dict, out: Path) -> ClipRecord:
    meta = {
        "source": scene["path"],
        "scene": scene["scene"],
        "start": scene["start_s"],
        "end": scene["end_s"],
    }
    meta["caption_source"] = scene["caption_source"]
    return ClipRecord(path=scene["clip"], caption=scene["caption"], meta=meta, **scene["video"])


def _remove_stale_clips(out: Path, keep: Iterable[str]) -> None:
    """Delete clips a previous run made that this run's manifest no longer lists."""
    keep = set(keep)
    for clip in (out / "clips").glob("*.mp4"):
        if f"clips/{clip.name}" not in keep:
            clip.unlink()


# Funnel steps: the label, and what removes items before it (file reasons, then scene stages).
FILE_STEPS = (
    ("readable", {"empty", "not_video", "truncated", "corrupt", "failed"}),
    ("within probe gates", {"too_small", "too_large", "too_short", "too_long"}),
    ("distinct files", {"exact_duplicate"}),
)
SCENE_STEPS = (
    ("passed quality", "quality"),
    ("unique", "dedup"),
    ("balanced", "balance"),
    ("clips written", "normalize"),
)


def _funnel(files_audit: list[dict], scenes: list[dict]) -> list[tuple[str, int]]:
    """How many files, then scenes, are left after each stage, in order."""
    funnel, removed = [("input files", len(files_audit))], set()
    for label, reasons in FILE_STEPS:
        removed |= reasons
        funnel.append((label, sum(1 for f in files_audit if f["reason"] not in removed)))
    funnel.append(("scenes", len(scenes)))
    stages: set[str] = set()
    for label, stage in SCENE_STEPS:
        stages.add(stage)
        funnel.append((label, sum(1 for s in scenes if s["stage"] not in stages)))
    return funnel
