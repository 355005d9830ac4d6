"""The whole curation run on the planted corpus: cuts, defects, duplicates, outputs, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kinema.data.curate import CurateRecipe, curate, gather_inputs
from kinema.data.manifest import clip_path, read_manifest
from kinema.io.video import probe
from tests.conftest import require_extra
from tests.data.curate.conftest import CUT_FRAMES, digests, files_by_name, scenes_of

KINEMA = [sys.executable, "-m", "kinema"]


def test_every_input_is_audited_and_nothing_crashed(run, corpus):
    result, audit = run
    names = {p.name for p in corpus.root.iterdir() if p.suffix == ".mp4"}
    assert set(files_by_name(audit)) == names
    assert all(a["reason"] != "failed" for a in audit)
    assert result.funnel[0] == ("input files", len(names))


def test_known_cuts_are_found_within_one_frame(run, corpus):
    _, audit = run
    starts = [s["start"] for s in scenes_of(audit, corpus.cuts_file)][1:]
    assert len(starts) == len(CUT_FRAMES)
    assert all(abs(found - known) <= 1 for found, known in zip(starts, CUT_FRAMES, strict=True)), starts


def test_planted_defects_are_rejected_for_the_right_reason(run, corpus):
    _, audit = run
    files = files_by_name(audit)
    for name, (stage, reason) in corpus.defects.items():
        if stage in ("probe", "dedup"):
            assert (files[name]["stage"], files[name]["reason"]) == (stage, reason), files[name]
            continue
        judged = [s for s in scenes_of(audit, name) if s["measurements"]["seconds"] >= 1.0]
        assert judged, name
        assert all((s["stage"], s["reason"]) == (stage, reason) for s in judged), [
            s["detail"] for s in judged
        ]


def test_duplicates_collapse_to_the_better_copy(run, corpus):
    _, audit = run
    for copy, original in corpus.near_duplicates.items():
        (dropped,) = scenes_of(audit, copy)
        (kept,) = scenes_of(audit, original)
        assert (dropped["reason"], kept["decision"]) == ("near_duplicate", "accepted")
        assert original in dropped["detail"]
    bikes_copies = [
        n for n, a in files_by_name(audit).items() if n.startswith("bikes") and "blurred" not in n
    ]
    assert sorted(files_by_name(audit)[n]["decision"] for n in bikes_copies) == ["accepted", "rejected"]


def test_manifest_lists_real_normalized_clips_with_captions(run, corpus):
    result, audit = run
    records = read_manifest(result.manifest)
    accepted = [a for a in audit if a["type"] == "scene" and a["decision"] == "accepted"]
    assert len(records) == len(accepted) == dict(result.funnel)["clips written"] > 0
    for record in records:
        info = probe(clip_path(record, result.manifest))
        assert (info.width, info.height, info.fps, info.num_frames) == (256, 144, 24.0, record.num_frames)
        assert abs(record.num_frames / 24.0 - (record.meta["end"] - record.meta["start"])) < 1 / 12
    captions = {Path(r.meta["source"]).name: r.caption for r in records}
    for name, caption in corpus.caption_sidecar.items():
        assert captions[name] == caption
    assert captions["carphone_pristine.mp4"] == "carphone pristine"  # from the file name
    assert len(list((result.out / "clips").glob("*.mp4"))) == len(records)


def test_inputs_are_never_modified(run, corpus):
    assert digests(corpus.root) == corpus.digests


def test_rerun_uses_the_cache_and_gives_the_same_manifest(run, corpus):
    result, _ = run
    again = curate([str(corpus.root)], result.out, CurateRecipe(), progress=False)
    assert again.analysed == 0 and again.from_cache == len(list(corpus.root.glob("*.mp4")))
    assert again.manifest.read_text() == result.manifest.read_text()


def test_killed_run_resumes_without_redoing_files(run, corpus, tmp_path):
    result, _ = run
    out = tmp_path / "killed"
    command = [*KINEMA, "data", "curate", str(corpus.root), "--out", str(out), "--workers", "1", "--quiet"]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while len(list((out / ".cache").glob("*.json"))) < 3 and process.poll() is None:
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = {p: p.stat().st_mtime_ns for p in (out / ".cache").glob("*.json")}
    assert 3 <= len(done) < len(list(corpus.root.glob("*.mp4"))) - 1
    assert not (out / "manifest.jsonl").exists()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert all(p.stat().st_mtime_ns == mtime for p, mtime in done.items())
    from_cache = int(finished.stdout.split("(")[1].split()[0])
    assert from_cache >= len(done)
    assert (out / "manifest.jsonl").read_text() == result.manifest.read_text()


def test_new_thresholds_apply_without_decoding(run, corpus, tmp_path):
    result, _ = run
    recipe = CurateRecipe()
    recipe.quality.min_sharpness = 0.0
    again = curate([str(corpus.root)], result.out, recipe, progress=False)
    assert again.analysed == 0
    audit = [json.loads(line) for line in again.audit.read_text().splitlines()]
    judged = [s for s in scenes_of(audit, "bikes_blurred.mp4") if s["measurements"]["seconds"] >= 1.0]
    assert judged and all(s["reason"] != "blurry" for s in judged)  # decided again from the cache
    curate(
        [str(corpus.root)], result.out, CurateRecipe(), progress=False
    )  # leave the session's run as it was


def test_captioner_plugs_in(corpus, tmp_path):
    recipe = CurateRecipe()
    recipe.captions.captioner = "tests.data.curate.conftest:brightness_caption"
    picked = [str(corpus.root / "carphone_pristine.mp4"), str(corpus.root / "bigbuckbunny.mp4")]
    result = curate(picked, tmp_path / "captioned", recipe, progress=False)
    captions = [r.caption for r in read_manifest(result.manifest)]
    assert len(captions) == 2 and all(c.startswith("a video of mean brightness") for c in captions)
    assert len(set(captions)) == 2  # computed from each clip's own frames


def test_bad_inputs_get_one_line_errors(tmp_path, corpus):
    missing = subprocess.run(
        [*KINEMA, "data", "curate", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    unknown = subprocess.run(
        [*KINEMA, "data", "curate", str(corpus.root), "--out", str(tmp_path / "o"), "quality.sharp=3"],
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2 and "quality.sharp" in unknown.stderr


def test_inputs_from_folders_globs_and_manifests(run, corpus):
    result, _ = run
    clips = sorted((result.out / "clips").glob("*.mp4"))
    assert gather_inputs([str(result.manifest)]) == [p.resolve() for p in clips]
    assert gather_inputs([str(corpus.root / "bikes*.mp4")]) == sorted(
        p.resolve() for p in corpus.root.glob("bikes*.mp4")
    )
    folder = gather_inputs([str(corpus.root)])
    assert all(p.suffix == ".mp4" for p in folder)  # the sidecar .txt is not an input


def test_concept_balancing_caps_a_cluster(corpus, tmp_path, monkeypatch):
    require_extra("sklearn", "curate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = CurateRecipe()
    recipe.captions.balance, recipe.captions.clusters, recipe.captions.max_per_cluster = True, 8, 1
    picked = [str(corpus.root / name) for name in ("bikes.mp4", "carphone_pristine.mp4")]
    result = curate(picked, tmp_path / "balanced", recipe, progress=False)
    audit = [json.loads(line) for line in result.audit.read_text().splitlines()]
    bikes = [s for s in scenes_of(audit, "bikes.mp4") if s["stage"] in (None, "balance")]
    # Five bikes scenes share one caption, so one cluster: only its sharpest scene stays.
    assert len(bikes) == 5 and len({s["cluster"] for s in bikes}) == 1
    kept = [s for s in bikes if s["decision"] == "accepted"]
    assert len(kept) == 1 and kept[0]["measurements"]["sharpness"] == max(
        s["measurements"]["sharpness"] for s in bikes
    )
    assert {s["reason"] for s in bikes if s not in kept} == {"concept_cap"}
    assert [label for label, _ in result.funnel].index("balanced") > 0
    assert dict(result.funnel)["balanced"] == 2 == len(read_manifest(result.manifest))
