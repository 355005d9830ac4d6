"""report.html of a curation run: the funnel, why things were rejected, histograms, a thumbnail gallery."""

from __future__ import annotations

from collections import Counter
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kinema.data.curate.recipe import CurateRecipe
from kinema.io import atomic_write_text
from kinema.io.html import figure_png, html_page, png_uri

GALLERY_LIMIT = 60  # thumbnails per gallery, so a big run's report stays a few MB

# Measurement, axis label, and the recipe's gates drawn on its histogram.
HISTOGRAMS = (
    ("sharpness", "sharpness (Laplacian variance)", ("min_sharpness",)),
    ("motion", "motion (% width / s)", ("min_motion", "max_motion")),
    ("shake", "shake (% width / s)", ("max_shake",)),
    ("black", "black frames (fraction)", ("max_black",)),
    ("frozen", "frozen frame pairs (fraction)", ("max_frozen",)),
    ("seconds", "scene length (s)", ("min_scene_seconds",)),
)


def write_curation_report(
    path: str | Path,
    funnel: list[tuple[str, int]],
    files: list[dict],
    scenes: list[dict],
    recipe: CurateRecipe,
) -> Path:
    """Write one self-contained HTML page about a curation run and return its path."""
    accepted = [s for s in scenes if s["decision"] == "accepted"]
    rejected = [s for s in scenes if s["decision"] == "rejected"]
    body = "\n".join(
        [
            "<h1>Kinema curation</h1>",
            f"<p class='muted'>{len(files)} input files, {len(scenes)} scenes, {len(accepted)} clips kept.</p>",
            "<h2>Funnel</h2>",
            _funnel_table(funnel),
            f"<img class='plot' alt='funnel' src='{png_uri(figure_png(_funnel_figure(funnel)))}'>",
            "<h2>Rejections by reason</h2>",
            _reasons_table(files + scenes),
            "<h2>Measurements</h2>",
            f"<img class='plot' alt='histograms' src='{png_uri(figure_png(_histograms(scenes, recipe)))}'>",
            f"<h2>Accepted clips ({len(accepted)})</h2>",
            _gallery(accepted),
            f"<h2>Rejected scenes ({len(rejected)})</h2>",
            _gallery(rejected),
            "<h2>Files</h2>",
            _files_table(files),
        ]
    )
    return atomic_write_text(path, html_page("Kinema curation", body))


def _funnel_table(funnel: list[tuple[str, int]]) -> str:
    rows = "".join(f"<tr><td>{escape(label)}</td><td class=num>{count}</td></tr>" for label, count in funnel)
    return f"<table class='grid narrow' id='funnel'><tr><th>stage</th><th>left</th></tr>{rows}</table>"


def _funnel_figure(funnel: list[tuple[str, int]]) -> Figure:
    fig = Figure(figsize=(7, 0.35 * len(funnel) + 0.8))
    ax = fig.add_subplot()
    labels, counts = zip(*funnel, strict=True)
    first_scene_step = labels.index("scenes")
    colors = ["#5b8def" if i < first_scene_step else "#2f9e66" for i in range(len(funnel))]
    ax.barh(range(len(funnel)), counts, color=colors)
    ax.set_yticks(range(len(funnel)), labels)
    ax.invert_yaxis()
    for i, c in enumerate(counts):
        ax.text(c, i, f" {c}", va="center")
    ax.set_xlabel("files (blue), then scenes (green)")
    fig.tight_layout()
    return fig


def _reasons_table(entries: list[dict]) -> str:
    counts = Counter((e["type"], e["stage"], e["reason"]) for e in entries if e["decision"] == "rejected")
    if not counts:
        return "<p class='muted'>Nothing was rejected.</p>"
    rows = "".join(
        f"<tr><td>{t}</td><td>{escape(stage)}</td><td>{escape(reason)}</td><td class=num>{n}</td></tr>"
        for (t, stage, reason), n in sorted(counts.items(), key=lambda kv: -kv[1])
    )
    return f"<table class='grid narrow'><tr><th>what</th><th>stage</th><th>reason</th><th>count</th></tr>{rows}</table>"


def _histograms(scenes: list[dict], recipe: CurateRecipe) -> Figure:
    fig = Figure(figsize=(12, 6))
    for i, (key, label, gates) in enumerate(HISTOGRAMS):
        ax = fig.add_subplot(2, 3, i + 1)
        for decision, color in (("accepted", "#2f9e66"), ("rejected", "#d9480f")):
            values = [s["measurements"][key] for s in scenes if s["decision"] == decision]
            if values:
                ax.hist(np.asarray(values, dtype=float), bins=20, alpha=0.6, color=color, label=decision)
        for gate in gates:
            ax.axvline(getattr(recipe.quality, gate), color="#333", linestyle="--", linewidth=1)
        ax.set_xlabel(label)
        ax.set_ylabel("scenes")
    fig.axes[0].legend()
    fig.tight_layout()
    return fig


def _gallery(scenes: list[dict]) -> str:
    if not scenes:
        return "<p class='muted'>None.</p>"
    cells = []
    for s in scenes[:GALLERY_LIMIT]:
        why = (
            "" if s["decision"] == "accepted" else f"<br><b>{escape(s['reason'])}</b>: {escape(s['detail'])}"
        )
        caption = f"<br><i>{escape(s.get('caption', ''))}</i>" if s.get("caption") else ""
        image = f"<img alt='scene' src='data:image/jpeg;base64,{s['thumb']}'>" if s["thumb"] else ""
        name = escape(Path(s["path"]).name)
        cells.append(
            f"<figure class='scene {s['decision']}'>{image}<figcaption>{name} #{s['scene']} "
            f"({s['start_s']:.2f}–{s['end_s']:.2f} s){caption}{why}</figcaption></figure>"
        )
    more = f"<p class='muted'>… and {len(scenes) - GALLERY_LIMIT} more (audit.jsonl has them all).</p>"
    style = "<style>figure.scene{display:inline-block;width:180px;margin:4px;vertical-align:top;font-size:12px}</style>"
    return style + "".join(cells) + (more if len(scenes) > GALLERY_LIMIT else "")


def _files_table(files: list[dict]) -> str:
    rows = []
    for f in files:
        info = f["probe"]
        what = (
            f"{info['codec']} {info['width']}x{info['height']} {info['fps']:.2f} fps {info['duration']:.2f} s"
            if info
            else "–"
        )
        decision = (
            "passed; see its scenes"
            if f["decision"] == "accepted"
            else f"<b>{escape(f['reason'])}</b>: {escape(f['detail'])}"
        )
        rows.append(
            f"<tr><td class=path>{escape(f['path'])}</td><td>{escape(what)}</td><td class=num>{f['scenes']}</td>"
            f"<td>{decision}</td></tr>"
        )
    head = "<tr><th>file</th><th>video</th><th>scenes</th><th>decision</th></tr>"
    return f"<table class='grid'>{head}{''.join(rows)}</table>"
