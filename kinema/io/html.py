"""Self-contained offline HTML pages: one stylesheet, figures and thumbnails inlined as PNG data URIs."""

from __future__ import annotations

import base64
import io
from html import escape

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;background:#f6f7f9;margin:0}
main{max-width:1320px;margin:0 auto;padding:20px 24px 40px}
h1{margin:0 0 4px;font-size:24px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #d8dbe0;padding-bottom:3px}
table.grid{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
.grid th{background:#e9ecf1;text-align:left;font-weight:600}
.grid th,.grid td{padding:4px 8px;vertical-align:top;border-bottom:1px solid #e3e5e9}
.grid>tbody>tr:nth-child(even)>td{background:#f4f6f9}
.grid .num,.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.grid>tbody>tr.err>td{background:#fdecea;color:#a4161a}
.kv{border-collapse:collapse} .kv td{padding:0 8px 0 0;border:0;background:none}
.thumbs{white-space:nowrap} .thumbs img{margin-right:3px;border:1px solid #ccd;image-rendering:pixelated}
.plot{max-width:100%;background:#fff;margin:6px 0;box-shadow:0 1px 2px #0001}
.muted{color:#6b7280} .yes{color:#1a7f37;font-weight:600} .no{color:#c62828;font-weight:600}
.nw{white-space:nowrap} .grid.narrow{width:auto;min-width:480px}
.path{font-family:ui-monospace,Menlo,monospace;word-break:break-all}
.note{background:#fff8e1;border-left:4px solid #f0b429;padding:6px 10px}
"""


def html_page(title: str, body: str) -> str:
    """A whole HTML document around `body`, with the shared stylesheet."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body><main>\n{body}\n</main></body></html>\n"
    )


def png_uri(png: bytes) -> str:
    """A data: URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig: Figure) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def thumb_png(frame: np.ndarray, height: int) -> bytes:
    """A PNG of `frame` about `height` px tall: tiny frames grow by whole pixels, big ones shrink smoothly."""
    img = Image.fromarray(np.ascontiguousarray(np.asarray(frame, dtype=np.uint8).squeeze()))
    w, h = img.size
    scale = min(height / h, 1.5 * height / w)
    if scale >= 2:
        img = img.resize((w * int(scale), h * int(scale)), Image.Resampling.NEAREST)
    elif scale < 1:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
