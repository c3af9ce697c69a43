"""Vectorised MinHash for code: BigCode-style shingles, signatures, LSH bands and union-find.

Shingles are ``n``-grams of lower-cased tokens split on non-identifier characters
(BigCode: 5-grams, threshold 0.7, B=25 bands × R=10 rows = 250 permutations, documents
with fewer than 5 tokens get no signature). A shingle is hashed to 32 bits; permutations
are datasketch's legacy universal hashes ``(a·h + b) mod (2^61−1) & (2^32−1)`` with the
same seeded parameters, so signatures equal ``datasketch.MinHash(scheme="legacy")`` fed
the same shingle hashes (the tests check this). The hot path works on whole batches of
documents: one (shingles × permutations) product per batch, ``np.minimum.reduceat`` per
document.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

MERSENNE = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
_NON_ID = re.compile(r"[^A-Za-z_0-9]+")
_MULT = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_ROWS_PER_BLOCK = 1024  # (rows × permutations) uint64 blocks that stay in cache


def code_tokens(text: str) -> list[str]:
    """Lower-cased identifier/number tokens (BigCode splits on ``[^A-Za-z_0-9]``)."""
    return [t for t in _NON_ID.split(text.lower()) if t]


def shingle_hashes(text: str, ngram: int = 5, min_tokens: int = 5) -> np.ndarray:
    """Unique 32-bit hashes (as uint64) of the token ``ngram``-grams of ``text``; empty below ``min_tokens``."""
    toks = code_tokens(text)
    if len(toks) < min_tokens:
        return np.empty(0, dtype=np.uint64)
    th = np.fromiter((zlib.crc32(t.encode()) for t in toks), dtype=np.uint64, count=len(toks))
    n = min(ngram, len(toks))
    width = len(toks) - n + 1
    h = np.zeros(width, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * _MULT + th[k : k + width] + np.uint64(k + 1)
        h ^= h >> np.uint64(31)
        h *= _MIX
        h ^= h >> np.uint64(29)
    return np.unique(h & MAX_HASH)


def permutations(num_perm: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's legacy permutation parameters ``(a, b)`` for ``seed``."""
    gen = np.random.RandomState(seed)
    ab = np.array(
        [
            (gen.randint(1, MERSENNE, dtype=np.uint64), gen.randint(0, MERSENNE, dtype=np.uint64))
            for _ in range(num_perm)
        ],
        dtype=np.uint64,
    ).T
    return ab[0].copy(), ab[1].copy()


@dataclass
class MinHasher:
    """Signatures of many documents at once."""

    num_perm: int = 250
    seed: int = 1
    ngram: int = 5
    min_tokens: int = 5

    def __post_init__(self) -> None:
        self.a, self.b = permutations(self.num_perm, self.seed)

    def _minimum(self, hv: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.min(np.bitwise_and((hv[:, None] * self.a + self.b) % MERSENNE, MAX_HASH), axis=0)

    def signatures_from_shingles(self, shingles: list[np.ndarray]) -> np.ndarray:
        """``[len(shingles), num_perm]`` uint32; documents without shingles get all ``2^32−1``."""
        out = np.full((len(shingles), self.num_perm), MAX_HASH, dtype=np.uint64)
        batch: list[int] = []
        rows = 0
        for i, s in enumerate(shingles):
            if s.size == 0:
                continue
            if s.size >= _ROWS_PER_BLOCK:  # big document: blocks of rows, running minimum
                for lo in range(0, s.size, _ROWS_PER_BLOCK):
                    out[i] = np.minimum(out[i], self._minimum(s[lo : lo + _ROWS_PER_BLOCK]))
                continue
            batch.append(i)
            rows += s.size
            if rows >= _ROWS_PER_BLOCK:
                self._batch(shingles, batch, out)
                batch, rows = [], 0
        if batch:
            self._batch(shingles, batch, out)
        return out.astype(np.uint32)

    def _batch(self, shingles: list[np.ndarray], idx: list[int], out: np.ndarray) -> None:
        hv = np.concatenate([shingles[i] for i in idx])
        starts = np.cumsum([0] + [shingles[i].size for i in idx[:-1]])
        with np.errstate(over="ignore"):
            phv = np.bitwise_and((hv[:, None] * self.a + self.b) % MERSENNE, MAX_HASH)
        out[idx] = np.minimum.reduceat(phv, starts, axis=0)

    def signatures(self, texts: list[str]) -> np.ndarray:
        return self.signatures_from_shingles([shingle_hashes(t, self.ngram, self.min_tokens) for t in texts])


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands·rows ≤ num_perm minimising false positives + negatives around ``threshold``."""
    xs = np.linspace(0, 1, 201)
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        r = num_perm // b
        p = 1 - (1 - xs**r) ** b
        err = p[xs < threshold].mean() * threshold + (1 - p[xs >= threshold]).mean() * (1 - threshold)
        if err < best_err:
            best, best_err = (b, r), err
    return best


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``[N, bands]`` uint64 hash of each band's rows; an empty-document row gets ``0`` (never matched)."""
    n = sigs.shape[0]
    out = np.zeros((n, bands), dtype=np.uint64)
    s = sigs[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    with np.errstate(over="ignore"):
        h = np.full((n, bands), np.uint64(1469598103934665603))
        for r in range(rows):
            h = (h ^ s[:, :, r]) * np.uint64(1099511628211)
    out[:] = h | np.uint64(1)
    out[np.all(sigs == np.uint32(MAX_HASH), axis=1)] = 0
    return out


def equal_run_pairs(keys: np.ndarray, max_bucket: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs sharing a non-zero key: all pairs of a bucket; a star above ``max_bucket``."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    bounds = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1], True])
    starts, ends = bounds[:-1], bounds[1:]
    multi = (ends - starts > 1) & (sk[starts] != 0)
    pa, pb = [], []
    for s, e in zip(starts[multi].tolist(), ends[multi].tolist(), strict=True):
        members = order[s:e]
        if e - s <= max_bucket:
            i, j = np.triu_indices(e - s, k=1)
            pa.append(members[i])
            pb.append(members[j])
        else:
            pa.append(np.full(e - s - 1, members[0]))
            pb.append(members[1:])
    if not pa:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(pa).astype(np.int64), np.concatenate(pb).astype(np.int64)


def estimated_jaccard(sa: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal signature values."""
    return (sa == sb).mean(axis=-1)


class UnionFind:
    """Union-find over ``0..n-1`` with path halving."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = p[x]
        return int(x)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        return np.array([self.find(i) for i in range(self.parent.size)], dtype=np.int64)


def components_to_remove(n: int, pairs_a: np.ndarray, pairs_b: np.ndarray, rank_of: np.ndarray) -> np.ndarray:
    """Indices to drop: every member of a duplicate component except the one with the lowest ``rank_of``."""
    uf = UnionFind(n)
    for a, b in zip(pairs_a.tolist(), pairs_b.tolist(), strict=True):
        uf.union(a, b)
    roots = uf.roots()
    best: dict[int, int] = {}
    for i in np.flatnonzero(roots != np.arange(n)).tolist() + np.unique(roots[roots != np.arange(n)]).tolist():
        r = int(roots[i])
        if r not in best or rank_of[i] < rank_of[best[r]]:
            best[r] = i
    members = np.flatnonzero(np.isin(roots, list(best)))
    keep = np.fromiter(best.values(), dtype=np.int64, count=len(best))
    return np.setdiff1d(members, keep)
