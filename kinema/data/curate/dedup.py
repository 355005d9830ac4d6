"""Stage 4: near-duplicate scenes across all files, by pHashes sampled at the same relative times.

Comparison is all pairs, which is fine up to some tens of thousands of scenes; beyond that an
index over hash bands (LSH) would find the candidate pairs instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import imagehash


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """1 - mean Hamming distance / 64 over aligned 64-bit pHashes (0 when either is empty)."""
    if not a or not b or len(a) != len(b):
        return 0.0
    distance = sum(imagehash.hex_to_hash(x) - imagehash.hex_to_hash(y) for x, y in zip(a, b, strict=False))
    return 1.0 - distance / (64 * len(a))


def find_duplicates(
    signatures: dict[str, list[str]], score: Callable[[str], tuple[float, ...]], min_similarity: float
) -> dict[str, tuple[str, float]]:
    """Each duplicate scene id -> (the id kept in its place, their similarity).

    Scenes join a group when they are similar to any member (single linkage); each group keeps the
    member with the highest `score` and the others point at it.
    """
    ids = sorted(signatures)
    parent = {i: i for i in ids}

    def root(i: str) -> str:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    links: dict[tuple[str, str], float] = {}
    for n, a in enumerate(ids):
        for b in ids[n + 1 :]:
            s = similarity(signatures[a], signatures[b])
            if s >= min_similarity:
                links[a, b] = s
                parent[root(b)] = root(a)
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(root(i), []).append(i)
    duplicates = {}
    for members in groups.values():
        kept = min(members, key=lambda i: (tuple(-x for x in score(i)), i))  # best, then first by id
        for i in members:
            if i != kept:
                pair = (min(i, kept), max(i, kept))
                duplicates[i] = (kept, links.get(pair) or similarity(signatures[i], signatures[kept]))
    return duplicates
