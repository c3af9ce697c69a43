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


# Vectorised tokenising and shingling over a whole batch of documents (bytes, numpy): a token is a
# run of ASCII ``[A-Za-z0-9_]`` bytes (the same split as ``code_tokens``: non-ASCII characters separate
# tokens), hashed by a polynomial over its lower-cased bytes computed from one prefix sum.
_IS_ID = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _IS_ID[_c] = True
_LOWER = np.arange(256, dtype=np.uint32)
_LOWER[65:91] += np.uint32(32)
_P = 0x01000193  # FNV-32 prime: odd, so it has an inverse modulo 2^32
_P_INV = pow(_P, -1, 1 << 32)
_BATCH_BYTES = 1 << 21
_powers_cache: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``P^i`` and ``P^-i`` (mod 2^32) for ``i < n`` (cached, grown geometrically)."""
    have = _powers_cache.get("p")
    if have is None or have.size < n:
        size = max(n, _BATCH_BYTES, 0 if have is None else have.size * 2)
        with np.errstate(over="ignore"):
            p = np.empty(size, dtype=np.uint32)
            p[0] = 1
            p[1:] = np.uint32(_P)
            _powers_cache["p"] = np.cumprod(p, dtype=np.uint32)
            q = np.empty(size, dtype=np.uint32)
            q[0] = 1
            q[1:] = np.uint32(_P_INV)
            _powers_cache["q"] = np.cumprod(q, dtype=np.uint32)
    return _powers_cache["p"][:n], _powers_cache["q"][:n]


def _shingle_batch(texts: list[str], ngram: int, min_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    n_docs = len(encoded)
    lens = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=n_docs)
    doc_start = np.zeros(n_docs, dtype=np.int64)
    np.cumsum(lens[:-1], out=doc_start[1:])
    raw = np.frombuffer(b"\x00".join(encoded) + b"\x00", dtype=np.uint8)
    is_id = _IS_ID[raw]
    edges = np.diff(is_id.view(np.int8), prepend=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    pw, inv = _powers(raw.size)
    with np.errstate(over="ignore"):
        prefix = np.zeros(raw.size + 1, dtype=np.uint32)
        np.cumsum(_LOWER[raw] * pw, out=prefix[1:], dtype=np.uint32)
        th = ((prefix[ends] - prefix[starts]) * inv[starts]).astype(np.uint64)
        th = (th << np.uint64(32)) | (ends - starts).astype(np.uint64)  # token length too
        th ^= th >> np.uint64(29)
        th *= _MIX
        th ^= th >> np.uint64(32)
    tok_doc = np.searchsorted(doc_start, starts, side="right") - 1
    counts = np.bincount(tok_doc, minlength=n_docs)
    keys: list[np.ndarray] = []
    width = th.size - ngram + 1
    if width > 0:
        h = np.zeros(width, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(ngram):
                h = h * _MULT + th[k : k + width] + np.uint64(k + 1)
        ok = (tok_doc[:width] == tok_doc[ngram - 1 :]) & (counts[tok_doc[:width]] >= min_tokens)
        keys.append(_key(tok_doc[:width][ok], h[ok]))
    short = np.flatnonzero((counts < ngram) & (counts >= min_tokens) & (counts > 0))
    if short.size:  # fewer tokens than the n-gram size: one shingle of all of them
        first = np.searchsorted(tok_doc, short)
        hs = np.zeros(short.size, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(int(counts[short].max())):
                live = k < counts[short]
                hs[live] = hs[live] * _MULT + th[first[live] + k] + np.uint64(k + 1)
        keys.append(_key(short, hs))
    allkeys = sorted_unique(np.concatenate(keys)) if keys else np.empty(0, dtype=np.uint64)
    offsets = np.searchsorted(allkeys >> np.uint64(32), np.arange(n_docs + 1, dtype=np.uint64))
    return allkeys & MAX_HASH, offsets.astype(np.int64)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """``np.unique`` for 1-D arrays by sort + mask (numpy 2.x's hash-based ``unique`` is ~60× slower here)."""
    s = np.sort(x)
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _key(doc: np.ndarray, h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(31))
        h = h * _MIX
        h ^= h >> np.uint64(29)
    return (doc.astype(np.uint64) << np.uint64(32)) | (h & MAX_HASH)


def batch_shingles(texts: list[str], ngram: int = 5, min_tokens: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Shingles of many documents at once: ``(flat, offsets)``, document ``i``'s sorted unique 32-bit
    shingle hashes (as uint64) are ``flat[offsets[i]:offsets[i+1]]``; empty below ``min_tokens`` tokens.

    Args:
        texts: documents.
        ngram: tokens per shingle.
        min_tokens: documents with fewer tokens get no shingles.
    """
    flats, offsets, base, lo = [], [np.zeros(1, dtype=np.int64)], 0, 0
    while lo < len(texts):
        hi, size = lo, 0
        while hi < len(texts) and (hi == lo or size + len(texts[hi]) <= _BATCH_BYTES):
            size += len(texts[hi])
            hi += 1
        flat, off = _shingle_batch(texts[lo:hi], ngram, min_tokens)
        flats.append(flat)
        offsets.append(off[1:] + base)
        base += flat.size
        lo = hi
    flat = np.concatenate(flats) if flats else np.empty(0, dtype=np.uint64)
    return flat, np.concatenate(offsets)


def shingle_hashes(text: str, ngram: int = 5, min_tokens: int = 5) -> np.ndarray:
    """Unique 32-bit hashes (as uint64) of the token ``ngram``-grams of ``text``; empty below ``min_tokens``."""
    return batch_shingles([text], ngram, min_tokens)[0]


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


def _default_engine() -> str:
    try:
        import rensa  # noqa: F401
    except ImportError:
        return "numpy"
    return "rensa"


@dataclass
class MinHasher:
    """Signatures of many documents at once.

    ``engine="rensa"`` (default when installed): rensa's Rust ``RMinHash`` over the same shingle
    hashes (one flat buffer + row offsets, no per-document Python objects). ``engine="numpy"``:
    datasketch's legacy permutations, signatures identical to ``datasketch.MinHash(scheme="legacy")``.
    """

    num_perm: int = 250
    seed: int = 1
    ngram: int = 5
    min_tokens: int = 5
    engine: str = ""

    def __post_init__(self) -> None:
        self.engine = self.engine or _default_engine()
        if self.engine not in ("rensa", "numpy"):
            raise ValueError(f"engine {self.engine!r}: use 'rensa' or 'numpy'")
        self.a, self.b = permutations(self.num_perm, self.seed)

    def signatures_flat(self, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``[n_docs, num_perm]`` uint32 from ``batch_shingles`` output; documents without shingles get ``2^32−1``."""
        n = offsets.size - 1
        if self.engine == "numpy":
            return self.signatures_from_shingles([flat[offsets[i] : offsets[i + 1]] for i in range(n)])
        from rensa import RMinHash

        if n == 0:
            return np.empty((0, self.num_perm), dtype=np.uint32)
        matrix = RMinHash.digest_matrix_from_flat_token_hashes(
            np.ascontiguousarray(flat, dtype=np.uint64), offsets.astype(np.uint64), self.num_perm, self.seed
        )
        sigs = np.array(matrix.to_rows(), dtype=np.uint32).reshape(n, self.num_perm)
        sigs[np.diff(offsets) == 0] = np.uint32(MAX_HASH)
        return sigs

    def _minimum(self, hv: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.min(np.bitwise_and((hv[:, None] * self.a + self.b) % MERSENNE, MAX_HASH), axis=0)

    def signatures_from_shingles(self, shingles: list[np.ndarray]) -> np.ndarray:
        """``[len(shingles), num_perm]`` uint32; documents without shingles get all ``2^32−1``."""
        if self.engine == "rensa":
            offsets = np.zeros(len(shingles) + 1, dtype=np.int64)
            np.cumsum([s.size for s in shingles], out=offsets[1:])
            flat = np.concatenate(shingles) if shingles else np.empty(0, dtype=np.uint64)
            return self.signatures_flat(flat, offsets)
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
        """Text → shingles → signatures for a batch of documents."""
        return self.signatures_flat(*batch_shingles(texts, self.ngram, self.min_tokens))


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
    """Indices to drop: every member of a duplicate component except the one with the lowest ``rank_of``.

    Connected components by ``scipy.sparse.csgraph.connected_components`` (C, linear in pairs), then one
    vectorised pass: sort members by (component, rank) and keep the first of each component.
    """
    if n == 0 or pairs_a.size == 0:
        return np.empty(0, dtype=np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(pairs_a.size, dtype=np.int8), (pairs_a.astype(np.int64), pairs_b.astype(np.int64))), shape=(n, n)
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    members = np.flatnonzero(sizes[labels] > 1)
    order = members[np.lexsort((rank_of[members], labels[members]))]
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    return np.sort(order[~first])
