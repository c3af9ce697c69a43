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
from functools import cache

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
# tokens), hashed from its case-folded first and last 8 bytes and its length.
_IS_ID = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _IS_ID[_c] = True
_BATCH_BYTES = 1 << 21
_CASE = np.uint64(0x2020202020202020)  # sets bit 5 of each byte: A-Z → a-z; digits, a-z keep; `_` → 0x7F
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _token_hashes(raw: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each case-folded token from its first and last 8 bytes and its length.

    Two unaligned 8-byte loads per token instead of a pass over every byte; tokens longer than
    16 bytes that agree in both ends and in length share a hash (a shingle collision, harmless
    for MinHash).
    """
    n = raw.size
    buf = np.zeros(n + 16, dtype=np.uint8)
    buf[8 : 8 + n] = raw
    words = np.ndarray((n + 9,), dtype=np.uint64, buffer=buf.data, strides=(1,))  # words[i] = buf[i:i+8]
    length = (ends - starts).astype(np.uint64)
    short = np.minimum(length, np.uint64(8))
    with np.errstate(over="ignore"):
        first = (words[starts + 8] | _CASE) & (_ALL >> (np.uint64(64) - np.uint64(8) * short))
        last = (words[ends] | _CASE) * (length > np.uint64(8))
        th = first * _K1 + (last ^ (last >> np.uint64(31))) * _K2 + length
        th ^= th >> np.uint64(29)
        th *= _MIX
        th ^= th >> np.uint64(32)
    return th


def _shingle_batch(texts: list[str], ngram: int, min_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
    n_docs = len(encoded)
    lens = np.fromiter((len(e) + 1 for e in encoded), dtype=np.int64, count=n_docs)
    doc_start = np.zeros(n_docs, dtype=np.int64)
    np.cumsum(lens[:-1], out=doc_start[1:])
    raw = np.frombuffer(b"\x00".join(encoded) + b"\x00", dtype=np.uint8)
    is_id = _IS_ID[raw]  # raw ends with a separator, so every token ends inside it
    bounds = np.flatnonzero(is_id[1:] != is_id[:-1]) + 1
    if is_id[0]:
        bounds = np.concatenate(([0], bounds))
    starts, ends = bounds[0::2], bounds[1::2]
    th = _token_hashes(raw, starts, ends)
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


_EMPTY = np.uint32(0xFFFFFFFF)


def oph_signatures(flat: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int = 1) -> np.ndarray:
    """One-permutation hashing with optimal densification: ``[n_docs, num_perm]`` uint32.

    The 32-bit shingle hashes are the permutation: bin ``j`` of a document holds the least hash
    in the ``j``-th of ``num_perm`` consecutive ranges of the hash space; since ``batch_shingles``
    returns each document's hashes sorted, that is the first hash of each run of equal bins (no
    sort, no per-permutation product). An empty bin borrows a filled bin's value along a fixed probe sequence (optimal
    densification, ``_densify``), so P[equal bin] stays the Jaccard similarity. ``seed != 1``
    remixes the hashes with a seeded bijection (then they are re-sorted) and changes the probes.
    Documents without shingles get all ``2^32−1``.

    Args:
        flat: shingle hashes (< 2^32) of all documents, each document's run sorted ascending.
        offsets: ``n_docs + 1`` run boundaries into ``flat``.
        num_perm: bins (signature length).
        seed: 1 uses the shingle hashes as they are.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    n = offsets.size - 1
    if not 0 < num_perm <= 1 << 16:
        raise ValueError(f"num_perm {num_perm}: one-permutation hashing supports 1..65536 bins")
    sig = np.full((n, num_perm), _EMPTY, dtype=np.uint32)
    if n == 0 or flat.size == 0:
        return sig
    h = np.asarray(flat, dtype=np.uint64)
    sizes = np.diff(offsets)
    if seed != 1:
        doc = np.repeat(np.arange(n, dtype=np.uint64), sizes)
        with np.errstate(over="ignore"):
            x = (h ^ np.uint64(seed * 0x9E3779B97F4A7C15 & 0xFFFFFFFF)) * np.uint64(0x85EBCA6B) & MAX_HASH
            x ^= x >> np.uint64(13)
            x = x * np.uint64(0xC2B2AE35) & MAX_HASH
            x ^= x >> np.uint64(16)
        h = np.sort((doc << np.uint64(32)) | x) & MAX_HASH
    h = h.astype(np.uint32)
    # bin by the top 16 bits (a monotone map, so each run's first hash is the bin's least; widths differ
    # by at most one part in 2^16/num_perm), all in uint32
    bins = np.right_shift(h, np.uint32(16))
    np.multiply(bins, np.uint32(num_perm), out=bins)
    np.right_shift(bins, np.uint32(16), out=bins)
    first = np.empty(h.size, dtype=bool)
    first[0] = True
    np.not_equal(bins[1:], bins[:-1], out=first[1:])
    first[offsets[:-1][sizes > 0]] = True
    idx = np.flatnonzero(first)
    per_doc = np.diff(np.searchsorted(idx, offsets))  # bins filled per document
    doc = np.repeat(np.arange(n), per_doc)
    sig.reshape(-1)[doc * num_perm + bins[idx]] = h[idx]
    _densify(sig, per_doc, num_perm, seed)
    return sig


_PROBES = 8


@cache
def _probe_table(k: int, seed: int) -> np.ndarray:
    """``[_PROBES, k]``: row ``a`` holds the bin each bin probes ``a``-th (the same for every document)."""
    return np.random.default_rng([k, seed]).integers(0, k, size=(_PROBES, k), dtype=np.int64)


def _densify(sig: np.ndarray, filled: np.ndarray, k: int, seed: int) -> None:
    """Fill the empty bins of documents that have some filled bins (optimal densification).

    An empty bin ``j`` takes the value of the first filled bin among a fixed pseudo-random probe
    sequence of ``j`` (Shrivastava, 2017): two documents empty at ``j`` probe the same bins, so
    they agree with probability equal to their Jaccard similarity. Values of different bins lie in
    disjoint ranges, so a borrowed value never equals a bin's own. After ``_PROBES`` misses
    (nearly empty documents), the next filled bin to the right, circularly.
    """
    flat = sig.reshape(-1)
    own = flat != _EMPTY
    todo = np.flatnonzero(~own)
    todo = todo[filled[todo // k] > 0]  # documents without shingles stay empty
    if todo.size == 0:
        return
    col = todo % k
    base = todo - col
    probes = _probe_table(k, seed)
    for a in range(_PROBES):
        src = base + probes[a][col]
        hit = own[src]
        flat[todo[hit]] = flat[src[hit]]
        miss = ~hit
        todo, col, base = todo[miss], col[miss], base[miss]
        if todo.size == 0:
            return
    row = todo // k
    full = np.flatnonzero(own)
    at = np.searchsorted(full, todo)
    nxt = full[np.minimum(at, full.size - 1)]
    wrap = (at == full.size) | (nxt // k != row)
    nxt[wrap] = full[np.searchsorted(full, row[wrap] * k)]  # circular: the row's first filled bin
    flat[todo] = flat[nxt]


def _default_engine() -> str:
    try:
        import rensa  # noqa: F401
    except ImportError:
        return "numpy"
    return "rensa"


@dataclass
class MinHasher:
    """Signatures of many documents at once.

    ``engine="oph"``: one-permutation hashing with densification in numpy (``oph_signatures``; the
    fastest: no copy out of an extension, no per-permutation product). ``engine="rensa"`` (the
    default when installed): rensa's Rust ``RMinHash`` over the same shingle hashes (one flat buffer
    + row offsets; its rows are copied out as Python lists). ``engine="numpy"``: datasketch's legacy
    permutations, signatures identical to ``datasketch.MinHash(scheme="legacy")``.
    """

    num_perm: int = 250
    seed: int = 1
    ngram: int = 5
    min_tokens: int = 5
    engine: str = ""

    def __post_init__(self) -> None:
        self.engine = self.engine or _default_engine()
        if self.engine not in ("oph", "rensa", "numpy"):
            raise ValueError(f"engine {self.engine!r}: use 'oph', 'rensa' or 'numpy'")
        self.a, self.b = permutations(self.num_perm, self.seed)

    def signatures_flat(self, flat: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``[n_docs, num_perm]`` uint32 from ``batch_shingles`` output; documents without shingles get ``2^32−1``."""
        n = offsets.size - 1
        if self.engine == "oph":
            return oph_signatures(flat, offsets, self.num_perm, self.seed)
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
        if self.engine in ("rensa", "oph"):
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


def component_labels(n: int, pairs_a: np.ndarray, pairs_b: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes under the pairs; ``-1`` for nodes in no pair's component.

    ``scipy.sparse.csgraph.connected_components`` (C, linear in pairs); deterministic, so every shard of a
    parallel cluster stage computes the same labels.

    Args:
        n: number of nodes.
        pairs_a: one end of each duplicate pair.
        pairs_b: the other end.
    """
    labels = np.full(n, -1, dtype=np.int64)
    if n == 0 or pairs_a.size == 0:
        return labels
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(pairs_a.size, dtype=np.int8), (pairs_a.astype(np.int64), pairs_b.astype(np.int64))), shape=(n, n)
    ).tocsr()
    _, lab = connected_components(graph, directed=False)
    sizes = np.bincount(lab)
    multi = sizes[lab] > 1
    labels[multi] = lab[multi]
    return labels


def components_to_remove(
    n: int,
    pairs_a: np.ndarray,
    pairs_b: np.ndarray,
    rank_of: np.ndarray,
    labels: np.ndarray | None = None,
    members: np.ndarray | None = None,
) -> np.ndarray:
    """Indices to drop: every member of a duplicate component except the one with the lowest ``rank_of``.

    Connected components by ``component_labels``, then one vectorised pass: sort members by
    (component, rank) and keep the first of each component.

    Args:
        n: number of nodes.
        pairs_a: one end of each duplicate pair.
        pairs_b: the other end.
        rank_of: priority rank per node (lower survives); only members' entries are read.
        labels: precomputed ``component_labels`` (optional).
        members: the nodes to decide for (default: every node in a component); whole components only.
    """
    if labels is None:
        labels = component_labels(n, pairs_a, pairs_b)
    if members is None:
        members = np.flatnonzero(labels >= 0)
    if members.size == 0:
        return np.empty(0, dtype=np.int64)
    order = members[np.lexsort((rank_of[members], labels[members]))]
    first = np.r_[True, labels[order][1:] != labels[order][:-1]]
    return np.sort(order[~first])
