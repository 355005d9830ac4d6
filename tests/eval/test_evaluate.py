"""Scoring folders of real video files: error rows, checks, references and Fréchet distances."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kinema.data.shapes import ShapesConfig, synthesize
from kinema.eval.checkers import NOT_FOUND
from kinema.eval.evaluate import FVD_UNAVAILABLE, collect_targets, evaluate, format_table
from kinema.eval.report import write_report
from kinema.io import read_video, write_video


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """Six shapes-world clips with a manifest and ground truth."""
    out = tmp_path_factory.mktemp("shapes")
    synthesize(out, num=6, config=ShapesConfig(max_objects=1), seed=3, progress=False)
    return out


@pytest.fixture
def folder_with_bad_files(shapes, tmp_path) -> Path:
    folder = tmp_path / "videos"
    shutil.copytree(shapes / "clips", folder)
    whole = (folder / "shapes_000000.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.mp4").write_text("not a video")
    (folder / "empty.mkv").write_bytes(b"")
    (folder / "readme.txt").write_text("ignored: not a video suffix")
    return folder


def rows_by_name(summary: dict) -> dict[str, dict]:
    return {Path(row["path"]).name: row for row in summary["videos"]}


def test_bad_files_become_error_rows_and_the_rest_are_scored(folder_with_bad_files):
    summary = evaluate([folder_with_bad_files], progress=False).summary
    rows = rows_by_name(summary)
    assert set(rows) == {f"shapes_{i:06d}.mp4" for i in range(6)} | {"cut.mp4", "notes.mp4", "empty.mkv"}
    assert summary["summary"] | {"metrics": None} == {"count": 9, "ok": 6, "errors": 3, "metrics": None}
    assert "truncated" in rows["cut.mp4"]["error"]
    assert "empty" in rows["empty.mkv"]["error"]
    assert rows["notes.mp4"]["status"] == "error"
    ok = rows["shapes_000001.mp4"]
    assert ok["frames"] == 17 and ok["width"] == 64 and ok["fps"] == 8.0
    assert 0 < ok["metrics"]["temporal_consistency"] <= 1 and ok["labels"]["motion"] is not None
    json.dumps(summary, allow_nan=False)  # strictly valid JSON


def test_manifest_gives_ground_truth_checks(shapes):
    summary = evaluate([], manifest=shapes / "manifest.jsonl", progress=False).summary
    assert summary["summary"]["ok"] == 6
    assert all(row["check"]["source"] == "ground_truth" for row in summary["videos"])
    checker = summary["checker"]
    assert checker["color"]["total"] == 6 and checker["count"]["total"] == 6
    assert checker["color"]["accuracy"] == 1.0 and checker["shape"]["accuracy"] == 1.0


def test_sidecar_prompt_is_checked_and_a_wrong_prompt_fails(shapes, tmp_path):
    truth = json.loads((shapes / "ground_truth" / "shapes_000000.json").read_text())
    obj = truth["objects"][0]
    wrong_color = next(c for c in ("red", "blue") if c != obj["color"])
    right, wrong = tmp_path / "right.mp4", tmp_path / "wrong.mp4"
    for video in (right, wrong):
        shutil.copy(shapes / "clips" / "shapes_000000.mp4", video)
    right.with_suffix(".txt").write_text(f"a {obj['color']} {obj['shape']} {obj['motion']}")
    wrong.with_suffix(".json").write_text(json.dumps({"prompt": f"a {wrong_color} {obj['shape']}"}))
    summary = evaluate([right, wrong], progress=False).summary
    rows = rows_by_name(summary)
    assert summary["confusion"]["color"] == {obj["color"]: {obj["color"]: 1}, wrong_color: {NOT_FOUND: 1}}
    assert rows["right.mp4"]["check"]["source"] == "caption"
    assert rows["right.mp4"]["check"]["correct"]["color"] == [True]
    assert rows["wrong.mp4"]["check"]["correct"]["color"] == [False]


def test_captions_without_shapes_are_not_checked(shapes, tmp_path):
    video = tmp_path / "beach.mp4"
    shutil.copy(shapes / "clips" / "shapes_000000.mp4", video)
    video.with_suffix(".txt").write_text("waves rolling onto a beach at sunset")
    (row,) = evaluate([video], progress=False).summary["videos"]
    assert row["caption"] == "waves rolling onto a beach at sunset" and row["check"] is None


def test_reference_gives_per_frame_psnr_and_horizon(shapes, tmp_path):
    predictions = tmp_path / "pred"
    rng = np.random.default_rng(0)
    for i in range(3):
        frames, fps = read_video(shapes / "clips" / f"shapes_{i:06d}.mp4")
        noise = rng.normal(0, 3, frames.shape) * np.linspace(0, 4, len(frames))[:, None, None, None]
        write_video(
            predictions / f"shapes_{i:06d}.mp4", np.clip(frames + noise, 0, 255).astype(np.uint8), fps
        )
    summary = evaluate([predictions], reference=shapes / "clips", progress=False).summary
    psnr = summary["horizon"]["psnr"]
    assert len(psnr) == 17 and psnr[0] > psnr[-1] + 6  # the planted noise grows over the horizon
    row = summary["videos"][0]
    assert len(row["reference"]["ssim"]) == 17 and row["reference"]["frames_compared"] == 17
    frechet = summary["frechet"]
    assert frechet["available"] is False and frechet["reason"] == FVD_UNAVAILABLE
    assert frechet["count"] == 3 and frechet["reference_count"] == 6 and frechet["stats_distance"] > 0


def test_reference_against_itself_is_perfect(shapes):
    summary = evaluate([shapes / "clips"], reference=shapes / "clips", progress=False).summary
    assert all(value == 100.0 for value in summary["horizon"]["psnr"])
    assert all(value == 1.0 for value in summary["horizon"]["ssim"])
    assert summary["frechet"]["stats_distance"] == pytest.approx(0.0, abs=1e-9)


def test_reference_problems_are_noted_without_losing_the_metrics(shapes, tmp_path):
    reference = tmp_path / "ref"
    frames, fps = read_video(shapes / "clips" / "shapes_000000.mp4")
    write_video(reference / "shapes_000000.mp4", np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2), fps)
    videos = [shapes / "clips" / "shapes_000000.mp4", shapes / "clips" / "shapes_000001.mp4"]
    rows = rows_by_name(evaluate(videos, reference=reference, progress=False).summary)
    assert "reference is 128x128, the video is 64x64" in rows["shapes_000000.mp4"]["reference"]["error"]
    assert "no video named shapes_000001.mp4" in rows["shapes_000001.mp4"]["reference"]["error"]
    assert all(row["status"] == "ok" and row["metrics"] for row in rows.values())


def test_manifest_lists_the_videos_when_none_are_given(shapes):
    targets = collect_targets([], shapes / "manifest.jsonl")
    assert len(targets) == 6 and all(t.expected and t.source == "ground_truth" for t in targets)


def test_console_table_shows_scores_and_errors(folder_with_bad_files):
    table = format_table(evaluate([folder_with_bad_files], progress=False).summary)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["video", "consist", "sharp"]
    assert len(lines) == 10
    assert any("cut.mp4" in line and "error: " in line for line in lines)


def test_report_of_a_real_run_loads_every_image_in_chromium(folder_with_bad_files, shapes, tmp_path, browser):
    result = evaluate([folder_with_bad_files], reference=shapes / "clips", progress=False)
    report = write_report(tmp_path / "report.html", result.summary, result.thumbnails)
    page = browser.new_page()
    page.goto(report.as_uri(), wait_until="load")
    images = page.evaluate("() => Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 6 * 3 + 2  # thumbnails of the six good clips, metric and horizon plots
    assert all(complete and width > 0 for complete, width in images)
    assert page.locator("tr.err").count() == 3
    assert "FVD unavailable" in page.inner_text("body")
