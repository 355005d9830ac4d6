"""Stage 6: captions, and concept balancing by caption embeddings.

Captions come from a sidecar beside the input (`clip.txt`, or `clip.json` with a "caption" key),
else from the file name. A captioner plugs in as "module:function", called on each accepted clip:

    def caption(frames: np.ndarray, fps: float, source: str) -> str   # frames: uint8 (T, H, W, 3)

No VLM weights ship with Kinema (nothing is downloaded at run time), so none is the default;
docs/data.md shows how to plug one in.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kinema.errors import KinemaError

Captioner = Callable[[np.ndarray, float, str], str]


def file_caption(path: str | Path) -> tuple[str, str]:
    """(caption, where it came from) for an input file: its sidecar .txt/.json, else its name."""
    path = Path(path)
    text_file, json_file = path.with_suffix(".txt"), path.with_suffix(".json")
    if text_file.is_file():
        caption = text_file.read_text(encoding="utf-8", errors="replace").strip()
        if caption:
            return caption, "sidecar_txt"
    if json_file.is_file():
        try:
            caption = str(json.loads(json_file.read_text(encoding="utf-8")).get("caption", "")).strip()
        except (ValueError, AttributeError):
            caption = ""
        if caption:
            return caption, "sidecar_json"
    return re.sub(r"[_\-.]+", " ", path.stem).strip(), "filename"


def load_captioner(spec: str) -> Captioner:
    """Import a captioner from "module:function", with one clear error when it can't be found."""
    module_name, _, name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise KinemaError(f"captions.captioner '{spec}': {e}") from None
    if not callable(function):
        raise KinemaError(f"captions.captioner '{spec}' is not callable")
    return function


def caption_embeddings(captions: list[str]) -> np.ndarray:
    """Unit-length MiniLM sentence embeddings (mean over the tokens), (N, 384)."""
    import torch  # only a balancing run pays for the text encoder

    from kinema.models.text import load_text_encoder

    encoder = load_text_encoder("minilm")
    vectors = []
    for first in range(0, len(captions), 64):
        tokens, mask = encoder.encode(captions[first : first + 64])
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1)
        vectors.append(torch.nn.functional.normalize(mean.float(), dim=-1).cpu().numpy())
    return np.concatenate(vectors)


def balance_concepts(
    embeddings: np.ndarray, scores: list[float], clusters: int, max_per_cluster: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each clip, which clips to keep): k-means, then the best `max_per_cluster` per cluster.

    k is at most the number of distinct embeddings, so a handful of clips never meets empty clusters.
    """
    from sklearn.cluster import KMeans

    distinct = len(np.unique(embeddings.round(6), axis=0))
    k = max(1, min(clusters, distinct))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embeddings) if k > 1 else None
    labels = np.zeros(len(embeddings), dtype=int) if labels is None else labels
    keep = np.zeros(len(embeddings), dtype=bool)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        best_first = members[np.argsort([-scores[i] for i in members], kind="stable")]
        keep[best_first[:max_per_cluster]] = True
    return labels, keep
