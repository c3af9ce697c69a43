"""Exact Jaccard similarity join (ground truth for near-dedup evaluation).

Prefix filtering (Chaudhuri et al. 2006): with tokens ordered by global frequency
(rarest first), two sets with Jaccard ≥ t share a token among the first
``|x| − ⌈t·|x|⌉ + 1`` tokens of each; candidates are then verified exactly.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique arrays."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def similar_pairs(sets: list[np.ndarray], threshold: float) -> set[tuple[int, int]]:
    """All pairs (i < j) of non-empty sets with exact Jaccard ≥ ``threshold``."""
    freq = Counter(int(x) for s in sets for x in s.tolist())
    index: dict[int, list[int]] = defaultdict(list)
    out: set[tuple[int, int]] = set()
    order = sorted(range(len(sets)), key=lambda i: sets[i].size)
    for j in order:
        s = sets[j]
        if s.size == 0:
            continue
        toks = sorted(s.tolist(), key=lambda x: (freq[x], x))
        prefix = toks[: s.size - math.ceil(threshold * s.size) + 1]
        cands: set[int] = set()
        for t in prefix:
            cands.update(index[t])
            index[t].append(j)
        for i in cands:
            if sets[i].size >= threshold * s.size and jaccard(sets[i], s) >= threshold:
                out.add((min(i, j), max(i, j)))
    return out


def precision_recall(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    tp = len(found & truth)
    return tp / max(len(found), 1), tp / max(len(truth), 1)
