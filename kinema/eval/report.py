"""A self-contained offline HTML report of a `kinema eval --json` summary: tables, plots, thumbnails."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kinema.eval.checkers import mistakes
from kinema.io import atomic_write_text
from kinema.io.html import figure_png, html_page, png_uri, thumb_png

# Beyond this many videos the thumbnails shrink, so a report of hundreds of clips stays a few MB.
_MANY_VIDEOS = 40
_ATTRS = ("color", "shape", "motion")


def write_report(
    path: str | Path,
    summary: dict,
    thumbnails: dict[str, list[np.ndarray]],
    title: str = "Kinema evaluation",
) -> Path:
    """Write `summary` (the `kinema eval --json` dict) as one self-contained HTML file and return its path."""
    videos = summary.get("videos") or []
    ok = [v for v in videos if v.get("status") == "ok"]
    thumb_h = 64 if len(videos) > _MANY_VIDEOS else 128
    body = "\n".join(
        [
            _header(summary, videos, ok, title),
            _summary_table(summary),
            _checker_section(summary.get("checker")),
            _confusion_section(summary.get("confusion")),
            _frechet_section(summary.get("frechet")),
            _plots_section(ok, summary.get("horizon")),
            _videos_section(videos, thumbnails, thumb_h),
        ]
    )
    return atomic_write_text(path, html_page(title, body))


def _fmt(value: Any, none: str = "–") -> str:
    """A number for a table cell: None or NaN as `none`, infinity as ∞."""
    if value is None or isinstance(value, bool):
        return none if value is None else str(value)
    if not isinstance(value, int | float):
        return escape(str(value))
    if math.isnan(value):
        return none
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.4g}" if abs(value) < 10000 else f"{value:,.0f}"


def _header(summary: dict, videos: list[dict], ok: list[dict], title: str) -> str:
    counts = summary.get("summary") or {}
    n_ok, n_err = counts.get("ok", len(ok)), counts.get("errors", len(videos) - len(ok))
    inputs = ", ".join(f'<span class="path">{escape(str(i))}</span>' for i in summary.get("inputs") or [])
    meta = f"Created {escape(str(summary.get('created') or '–'))}"
    if summary.get("kinema_version"):
        meta += f" · kinema {escape(str(summary['kinema_version']))}"
    return (
        f"<h1>{escape(title)}</h1><div class='muted'>{meta}</div>"
        f"<p>Inputs: {inputs or '–'}<br><b>{_fmt(counts.get('count', len(videos)))}</b> videos: "
        f"<span class='yes'>{_fmt(n_ok)} ok</span>, <span class='{'no' if n_err else 'muted'}'>{_fmt(n_err)} error{'' if n_err == 1 else 's'}</span></p>"
    )


def _table(head: Sequence[str], rows: list[str], numeric: bool = True) -> str:
    """A zebra table; with `numeric`, it is narrow and all columns but the first are right-aligned numbers."""
    ths = "".join(f"<th{' class=num' if numeric and i else ''}>{h}</th>" for i, h in enumerate(head))
    return f"<table class='grid{' narrow' if numeric else ''}'><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _summary_table(summary: dict) -> str:
    stats = (summary.get("summary") or {}).get("metrics") or {}
    if not stats:
        return "<h2>Metrics</h2><p class='muted'>No metrics were computed.</p>"
    rows = [
        f"<tr><td>{escape(name)}</td><td class=num>{_fmt(s.get('mean'))} ± {_fmt(s.get('std'))}</td>"
        f"<td class=num>{_fmt(s.get('min'))}</td><td class=num>{_fmt(s.get('max'))}</td></tr>"
        for name, s in stats.items()
        if isinstance(s, dict)
    ]
    return "<h2>Metrics</h2>" + _table(["Metric", "Mean ± std", "Min", "Max"], rows)


def _checker_section(checker: dict | None) -> str:
    if not checker:
        return ""
    rows = []
    for attr, s in checker.items():
        acc = s.get("accuracy")
        pct = "–" if acc is None else f"{100 * acc:.1f} %"
        rows.append(
            f"<tr><td>{escape(attr)}</td><td class=num>{_fmt(s.get('correct'))} / {_fmt(s.get('total'))}</td>"
            f"<td class=num>{pct}</td></tr>"
        )
    return "<h2>Content checker</h2>" + _table(["Attribute", "Correct", "Accuracy"], rows)


def _confusion_section(table: dict | None) -> str:
    if not table:
        return ""
    rows = []
    for attr in _ATTRS:
        wrong = mistakes(table, attr)
        for want, counts in sorted(table.get(attr, {}).items()):
            instead = ", ".join(f"{escape(seen)} {n}" for w, seen, n in wrong if w == want) or "–"
            rows.append(
                f"<tr><td>{attr}</td><td>{escape(want)}</td>"
                f"<td class=num>{counts.get(want, 0)} / {sum(counts.values())}</td><td>{instead}</td></tr>"
            )
    return "<h2>What the checker saw instead</h2>" + _table(
        ["Attribute", "Wanted", "Right", "Seen instead"], rows, numeric=False
    )


def _frechet_section(frechet: dict | None) -> str:
    head = "<h2>Fréchet distance</h2>"
    if not frechet:
        return f"{head}<p class='muted'>Not computed: Fréchet distances need a reference set (--reference DIR).</p>"
    counts = (
        f"<span class='muted'>({_fmt(frechet.get('count'))} videos against {_fmt(frechet.get('reference_count'))} "
        f"in <span class='path'>{escape(str(frechet.get('reference') or '–'))}</span>)</span>"
    )
    stats = ""
    if frechet.get("stats_distance") is not None:
        stats = (
            f"<p>Fréchet distance over weight-free color, sharpness and motion statistics (not FVD) = "
            f"<b>{_fmt(frechet['stats_distance'])}</b> {counts}</p>"
        )
    if not frechet.get("available"):
        reason = escape(str(frechet.get("reason") or "no reason given"))
        return f"{head}{stats}<p class='note'><b>FVD unavailable:</b> {reason}</p>"
    feature = frechet.get("feature")
    name = "FVD" if feature in (None, "i3d") else f"Fréchet distance ({escape(str(feature))})"
    return f"{head}{stats}<p><b>{name} = {_fmt(frechet.get('value'))}</b> {counts}</p>"


def _finite(values: Sequence[Any]) -> np.ndarray:
    numbers = [v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values]
    arr = np.array(numbers, dtype=float)
    return arr[np.isfinite(arr)]


def _metrics_figure(ok: list[dict]) -> Figure | None:
    """One subplot per metric: a strip plot of the per-video values (a histogram when there are many)."""
    names = list(dict.fromkeys(k for v in ok for k in (v.get("metrics") or {})))
    data = {n: _finite([(v.get("metrics") or {}).get(n) for v in ok]) for n in names}
    data = {n: a for n, a in data.items() if a.size}
    if not data:
        return None
    cols = min(4, len(data))
    rows = math.ceil(len(data) / cols)
    fig = Figure(figsize=(2.7 * cols, 2.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    rng = np.random.default_rng(0)  # fixed jitter: the same summary always draws the same plot
    for ax, (name, vals) in zip(axes, data.items(), strict=False):
        if vals.size > _MANY_VIDEOS:
            ax.hist(vals, bins=20, color="#4c72b0")
        else:
            ax.scatter(vals, rng.uniform(-0.3, 0.3, vals.size), s=18, alpha=0.7, color="#4c72b0")
            ax.set_ylim(-1, 1)
            ax.set_yticks([])
        ax.axvline(float(vals.mean()), color="#c44e52", lw=1)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes[len(data) :]:
        ax.set_visible(False)
    return fig


def _horizon_figure(horizon: dict | None, ok: list[dict]) -> Figure | None:
    """PSNR / SSIM against frame index: the mean curve bold, each video's curve faint."""
    keys = [k for k in ("psnr", "ssim") if horizon and horizon.get(k)]
    if not keys:
        return None
    fig = Figure(figsize=(5.2 * len(keys), 2.8), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False).ravel()
    faint = min(0.35, max(0.04, 4 / len(ok)))  # many faint curves should not merge into a black band
    for ax, key in zip(axes, keys, strict=True):
        for v in ok:
            curve = (v.get("reference") or {}).get(key)
            if curve:
                ax.plot([np.nan if c is None else c for c in curve], color="#888", lw=0.8, alpha=faint)
        mean = [np.nan if c is None else c for c in horizon[key]]
        ax.plot(mean, color="#4c72b0", lw=2, marker="o", ms=3, label="mean")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("frame index", fontsize=8)
        ax.set_ylabel(key.upper() + (" (dB)" if key == "psnr" else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _plots_section(ok: list[dict], horizon: dict | None) -> str:
    if not ok:
        return "<h2>Plots</h2><p class='note'>No video was evaluated successfully, so there is nothing to plot.</p>"
    figs = [
        (
            _metrics_figure(ok),
            "metric distributions",
            "one dot per video (a histogram when there are many), red line at the mean",
        ),
        (
            _horizon_figure(horizon, ok),
            "quality over horizon",
            "mean over videos in blue, each video in grey; identical frames score 100 dB",
        ),
    ]
    parts = [
        f"<img class='plot' alt='{alt}' src='{png_uri(figure_png(fig))}'><div class='muted'>{alt}: {note}</div>"
        for fig, alt, note in figs
        if fig is not None
    ]
    return "<h2>Plots</h2>" + ("\n".join(parts) or "<p class='muted'>No finite metric values to plot.</p>")


def _thumbs_cell(frames: list[np.ndarray], height: int) -> str:
    if not frames:
        return "<span class='muted'>no preview</span>"
    names = ["first", "middle", "last"] if len(frames) == 3 else [f"frame {i}" for i in range(len(frames))]
    return "".join(
        f"<img alt='{n}' title='{n}' src='{png_uri(thumb_png(f, height))}'>"
        for n, f in zip(names, frames[:3], strict=False)
    )


def _mark(value: Any) -> str:
    return {True: "<span class='yes'>✓</span>", False: "<span class='no'>✗</span>"}.get(value, "–")


def _at(values: Any, i: int) -> Any:
    """values[i] for a per-object list, or None when it is missing or too short."""
    return values[i] if isinstance(values, list) and i < len(values) else None


def _describe(obj: dict) -> str:
    """'red circle moving right' from an object dict, with any extra keys appended."""
    keys = [k for k in _ATTRS if obj.get(k)] + [k for k in obj if k not in _ATTRS and obj[k] is not None]
    return escape(" ".join(str(obj[k]) for k in keys)) or "–"


def _check_cell(check: dict | None) -> str:
    if not check:
        return "<span class='muted'>–</span>"
    correct = check.get("correct") or {}
    attrs = [a for a in correct if a != "count"] or list(_ATTRS)
    rows = []
    for i, obj in enumerate(check.get("expected") or []):
        marks = " ".join(
            f"<span class='nw'>{escape(a)} {_mark(_at(correct.get(a), i))}</span>" for a in attrs
        )
        rows.append(f"<tr><td>{_describe(obj)}<br>{marks}</td></tr>")
    found = "; ".join(_describe(o) for o in check.get("found") or []) or "nothing"
    return (
        f"<div class='muted'>expected (from {escape(str(check.get('source') or '?'))}):</div>"
        f"<table class='kv'>{''.join(rows)}</table><div>found: {found}</div>"
        f"<div>count {_mark(correct.get('count'))}</div>"
    )


def _metrics_cell(video: dict) -> str:
    labels = video.get("labels") or {}
    rows = [
        f"<tr><td>{escape(name)}</td><td class=num>{_fmt(value)}</td>"
        f"<td class='muted nw'>{escape(str(labels[name])) if labels.get(name) else ''}</td></tr>"
        for name, value in (video.get("metrics") or {}).items()
    ]
    return f"<table class='kv'>{''.join(rows)}</table>" if rows else "<span class='muted'>–</span>"


def _reference_cell(ref: dict | None) -> str:
    if not ref:
        return "<span class='muted'>–</span>"
    # A null PSNR mean comes from identical frames (infinite PSNR); a null SSIM is just missing.
    return (
        f"<div class='path'>{escape(str(ref.get('path') or ''))}</div>"
        f"<span class='nw'>PSNR {_fmt(ref.get('psnr_mean'), none='∞')} dB</span><br>SSIM {_fmt(ref.get('ssim_mean'))}"
    )


def _video_row(video: dict, frames: list[np.ndarray], thumb_h: int) -> str:
    path = f"<div class='path'>{escape(str(video.get('path') or '?'))}</div>"
    if video.get("status") != "ok":
        error = escape(str(video.get("error") or video.get("status") or "unknown error"))
        return f"<tr class='err'><td><b>✗ error</b></td><td colspan=4>{path}<div>{error}</div></td></tr>"
    shape = f"{_fmt(video.get('width'))}×{_fmt(video.get('height'))}"
    meta = f"{shape} · {_fmt(video.get('frames'))} frames · {_fmt(video.get('fps'))} fps"
    caption = video.get("caption")
    caption_html = f"<div>“{escape(str(caption))}”</div>" if caption else ""
    return (
        f"<tr><td class='thumbs'>{_thumbs_cell(frames, thumb_h)}</td>"
        f"<td>{path}{caption_html}<div class='muted'>{meta}</div></td><td>{_metrics_cell(video)}</td>"
        f"<td>{_check_cell(video.get('check'))}</td><td>{_reference_cell(video.get('reference'))}</td></tr>"
    )


def _videos_section(videos: list[dict], thumbnails: dict[str, list[np.ndarray]], thumb_h: int) -> str:
    if not videos:
        return "<h2>Videos</h2><p class='muted'>No videos.</p>"
    rows = [_video_row(v, thumbnails.get(str(v.get("path")), []), thumb_h) for v in videos]
    return "<h2>Videos</h2>" + _table(
        ["Preview", "Video", "Metrics", "Check", "Reference"], rows, numeric=False
    )


SWEEP_METRICS = ("temporal_consistency", "sharpness_mean", "motion", "temporal_flickering", "mean_flow")


def write_sweep_report(path: str | Path, table: dict, title: str = "Kinema sweep") -> Path:
    """Write a sweep's time-against-metrics table and plots, linking each value's own report."""
    param, rows = table["param"], table["rows"]
    checks = sorted({name for row in rows for name in row.get("checker") or {}})
    head = [
        escape(param),
        "s / video",
        "videos",
        "errors",
        *map(escape, SWEEP_METRICS),
        *(f"acc. {c}" for c in checks),
    ]
    body = []
    for row in rows:
        name = f"{param}={row[param]}".replace("/", "_")
        link = f"<a href='{escape(name)}/report.html'>{escape(str(row[param]))}</a>"
        cells = [_fmt(row["seconds_per_video"]), _fmt(row["videos"]), _fmt(row["errors"])]
        cells += [_fmt(row["metrics"].get(m)) for m in SWEEP_METRICS]
        cells += [_fmt((row.get("checker") or {}).get(c)) for c in checks]
        body.append(f"<tr><td>{link}</td>" + "".join(f"<td class=num>{c}</td>" for c in cells) + "</tr>")
    prompts = "".join(f"<li>{escape(p)}</li>" for p in table["prompts"])
    figure = _sweep_figure(param, rows, checks)
    body_html = (
        f"<h1>{escape(title)}: {escape(param)}</h1>"
        f"<p class='muted'>seeds {escape(', '.join(map(str, table['seeds'])))}; prompts:</p><ul>{prompts}</ul>"
        f"<h2>Time against metrics</h2>{_table(head, body)}"
        f"<h2>Plots</h2><img class='plot' alt='sweep' src='{png_uri(figure_png(figure))}'>"
    )
    page = html_page(title, body_html)
    return atomic_write_text(path, page)


def _sweep_figure(param: str, rows: list[dict], checks: list[str]) -> Figure:
    """Seconds per video and each mean metric against the swept value, one small panel each."""
    labels = [str(row[param]) for row in rows]
    panels = [("seconds per video", [row["seconds_per_video"] for row in rows])]
    panels += [(m, [row["metrics"].get(m) for row in rows]) for m in SWEEP_METRICS]
    panels += [(f"accuracy: {c}", [(row.get("checker") or {}).get(c) for row in rows]) for c in checks]
    cols = min(4, len(panels))
    fig = Figure(figsize=(2.7 * cols, 2.1 * math.ceil(len(panels) / cols)), layout="constrained")
    axes = fig.subplots(math.ceil(len(panels) / cols), cols, squeeze=False).ravel()
    for ax, (name, values) in zip(axes, panels, strict=False):
        ax.plot(labels, [np.nan if v is None else v for v in values], marker="o", color="#4c72b0")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(param, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return fig
