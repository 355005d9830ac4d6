"""The offline HTML evaluation report: its HTML text, and the page as a real headless Chromium shows it."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest

from kinema.eval.checkers import confusion
from kinema.eval.report import write_report

BAD_PATH = 'clips/we<ird> & "odd".mp4'
BAD_ERROR = "truncated: stream <ends> at 1.2 s of 4.0 s & more"
FVD_REASON = "FVD needs I3D weights: pass --i3d PATH"
METRICS = ["temporal_consistency", "sharpness_mean", "motion"]


def _frames(color: tuple[int, int, int], size: int = 64) -> list[np.ndarray]:
    """First, middle and last frame of a square sliding right over a dark background."""
    frames = []
    for x in (4, 24, 44):
        f = np.full((size, size, 3), 20, np.uint8)
        f[24:40, x : x + 16] = color
        frames.append(f)
    return frames


def _video(path: str, caption: str | None, tc: float, psnr: list[float | None]) -> dict:
    return {
        "path": path,
        "status": "ok",
        "fps": 8.0,
        "frames": 17,
        "width": 64,
        "height": 64,
        "caption": caption,
        "metrics": {"temporal_consistency": tc, "sharpness_mean": 790.1, "motion": None},
        "labels": {"temporal_consistency": "good", "sharpness_mean": "very sharp"},
        "reference": {
            "path": "ref/" + path.split("/")[-1],
            "psnr": psnr,
            "ssim": [0.95, 0.9, 0.85],
            "psnr_mean": 31.2,
            "ssim_mean": 0.9,
        },
        "check": {
            "source": "caption",
            "expected": [{"shape": "circle", "color": "red", "motion": "moving right"}],
            "found": [{"shape": "circle", "color": "red", "motion": "moving left"}],
            "matched": [0],
            "correct": {"color": [True], "shape": [True], "motion": [False], "count": True},
        },
    }


def _summary() -> dict:
    stats = {"mean": 0.9, "std": 0.02, "min": 0.88, "max": 0.93}
    videos = [
        _video("clips/a.mp4", "a red circle moving right", 0.93, [None, 33.0, 30.0]),
        _video("clips/b.mp4", None, 0.88, [35.0, 31.0, 28.5]),
        {"path": BAD_PATH, "status": "error", "error": BAD_ERROR},
    ]
    return {
        "kinema_version": "0.1.0",
        "created": "2026-11-22T10:00:00",
        "inputs": ["clips"],
        "videos": videos,
        "summary": {"count": 3, "ok": 2, "errors": 1, "metrics": dict.fromkeys(METRICS, stats)},
        "checker": {
            "color": {"correct": 2, "total": 2, "accuracy": 1.0},
            "shape": {"correct": 2, "total": 2, "accuracy": 1.0},
            "motion": {"correct": 0, "total": 2, "accuracy": 0.0},
            "count": {"correct": 2, "total": 2, "accuracy": 1.0},
        },
        "confusion": confusion([video["check"] for video in videos if "check" in video]),
        "frechet": {"available": False, "reason": FVD_REASON},
        "horizon": {"psnr": [None, 32.0, 29.25], "ssim": [0.95, 0.9, 0.85]},
    }


def _thumbs() -> dict[str, list[np.ndarray]]:
    return {"clips/a.mp4": _frames((230, 30, 30)), "clips/b.mp4": _frames((30, 30, 230))}


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return write_report(tmp_path / "report.html", _summary(), _thumbs())


def _imgs(html: str) -> list[str]:
    return re.findall(r"<img\b[^>]*>", html)


def test_html_is_offline_and_escaped(report: Path) -> None:
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "<link" not in html
    assert BAD_PATH not in html and "<ird>" not in html and "<ends>" not in html
    assert "we&lt;ird&gt; &amp; &quot;odd&quot;.mp4" in html
    assert "stream &lt;ends&gt; at 1.2 s of 4.0 s &amp; more" in html
    srcs = [re.search(r"src='([^']*)'", tag).group(1) for tag in _imgs(html)]
    assert len(srcs) == 2 * 3 + 2  # thumbnails + the metric and horizon plots
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert re.search(r"0\.93</td><td[^>]*>good<", html)  # the value with its label beside it
    assert FVD_REASON in html and "FVD unavailable" in html
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # no temp file left behind


def test_only_errors_renders_without_plots(tmp_path: Path) -> None:
    summary = _summary()
    summary["videos"] = summary["videos"][2:]
    summary["summary"] = {"count": 1, "ok": 0, "errors": 1, "metrics": {}}
    summary.update(checker=None, frechet=None, horizon=None)
    html = write_report(tmp_path / "r.html", summary, {}).read_text(encoding="utf-8")
    assert not _imgs(html)
    assert "nothing to plot" in html and "Not computed" in html
    assert "class='err'" in html and "we&lt;ird&gt;" in html


def test_single_video_with_all_metrics_none(tmp_path: Path) -> None:
    summary = _summary()
    video = summary["videos"][0]
    video["metrics"] = dict.fromkeys(video["metrics"])
    video["labels"] = video["reference"] = video["check"] = None
    summary["videos"] = [video]
    summary["summary"]["metrics"] = dict.fromkeys(METRICS, dict.fromkeys(["mean", "std", "min", "max"]))
    summary["horizon"] = None
    html = write_report(tmp_path / "r.html", summary, _thumbs()).read_text(encoding="utf-8")
    assert len(_imgs(html)) == 3  # thumbnails only: no finite metric, no horizon
    assert "No finite metric values to plot" in html
    assert "– ± –" in html


def test_hundreds_of_videos_stay_small(tmp_path: Path) -> None:
    summary = _summary()
    rng = np.random.default_rng(1)
    videos, thumbs = [], {}
    for i in range(300):
        v = copy.deepcopy(summary["videos"][i % 2])
        v["path"] = f"clips/{i:03d}.mp4"
        v["metrics"]["temporal_consistency"] = float(rng.uniform(0.8, 1.0))
        videos.append(v)
        thumbs[v["path"]] = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    summary["videos"] = videos
    path = write_report(tmp_path / "r.html", summary, thumbs)
    assert len(_imgs(path.read_text(encoding="utf-8"))) == 900 + 2
    # Noise thumbnails are the worst case for PNG; 64 px tall keeps them ~12 KB each.
    assert path.stat().st_size < 40e6


IMAGES_JS = "() => Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])"


def test_report_in_headless_chromium(report: Path, tmp_path: Path, browser) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri(), wait_until="load")
    images = page.evaluate(IMAGES_JS)
    texts = {
        "error": page.locator("tr.err").inner_text(),
        "metrics": page.locator("table.grid").first.inner_text(),
        "instead": page.locator("h2:has-text('saw instead') + table").inner_text(),
        "body": page.inner_text("body"),
    }
    error_visible = page.locator("tr.err").is_visible()
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    # Negative control: the same image check must catch an image that does not decode.
    page.set_content("<img src='data:image/png;base64,AAAA'>")
    page.wait_for_load_state("load")
    broken = page.evaluate(IMAGES_JS)
    assert len(images) == 2 * 3 + 2
    assert all(complete and width > 0 for complete, width, _, _ in images), images
    thumbs = [img for img in images if img[3] in ("first", "middle", "last")]
    assert [(w, h) for _, w, h, _ in thumbs] == [(128, 128)] * 6  # 64 px frames upscaled x2
    assert broken[0][1] == 0
    assert error_visible and BAD_PATH in texts["error"] and BAD_ERROR in texts["error"]
    assert all(name in texts["metrics"] for name in METRICS)
    assert "motion\tmoving right\t0 / 2\tmoving left 2" in texts["instead"], texts["instead"]
    assert "shape\tcircle\t2 / 2\t–" in texts["instead"]
    assert "FVD unavailable" in texts["body"] and FVD_REASON in texts["body"]
    assert "0.93\tgood" in texts["body"] or "0.93 good" in texts["body"]
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
