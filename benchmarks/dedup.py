"""MinHash near-dedup benchmark: codekiln vs rensa, datatrove's MinHash and datasketch, on real site-packages code.

Headline: end to end (text → shingles → signatures) docs/s on one core, against the previous codekiln
path (per-document regex tokens + crc32, numpy MinHash) run in the same process. Signatures on the same
shingles: our default engine (one-permutation hashing with densification, numpy) against rensa
(``RMinHash.digest_matrix_from_flat_token_hashes`` + ``to_rows``, what the ``rensa`` engine calls, and
the matrix alone) and against datatrove / datasketch.

All three get the same shingles (BigCode-style 5-grams of identifier tokens, 32-bit
hashes) and the same permutations (datasketch's legacy seeded parameters; datatrove's
are replaced by ours, so its signatures are identical and the comparison is of the
machinery). Measured: signature throughput (docs/s, shingling excluded and included),
end-to-end near-dedup time (shingles → signatures → LSH → clusters), and the
precision/recall of the clusters each produces against exact Jaccard ≥ threshold
(a pair counts as found when both documents land in the same cluster).

    python benchmarks/dedup.py [--docs 1500] [--num-perm 250 --bands 25 --rows 10 --threshold 0.8]

Last line: one JSON object (name, metric, unit, ours, baseline, baseline_name, ratio, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import tempfile
import time
import zlib
from itertools import combinations
from pathlib import Path

import numpy as np

from codekiln.workloads.data.corpora import vendored_python_files
from codekiln.workloads.data.jaccard import precision_recall, similar_pairs
from codekiln.workloads.data.minhash import MAX_HASH, MinHasher, UnionFind, band_hashes, batch_shingles, code_tokens
from codekiln.workloads.data.near_dedup import MinhashParams, candidate_pairs

# The test corpus plus a few larger packages, so the benchmark has more documents to hash.
EXTRA_PACKAGES = ("pygments", "setuptools", "pip")


def corpus(limit: int) -> list[str]:
    """Vendored copies first (real near-duplicates), then other site-packages files, deterministic."""
    files = vendored_python_files(EXTRA_PACKAGES)[:limit]
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]


def legacy_shingle_hashes(text: str, ngram: int = 5, min_tokens: int = 5) -> np.ndarray:
    """The previous codekiln shingler (per document: regex tokens, crc32 per token, ``np.unique``)."""
    toks = code_tokens(text)
    if len(toks) < min_tokens:
        return np.empty(0, dtype=np.uint64)
    th = np.fromiter((zlib.crc32(t.encode()) for t in toks), dtype=np.uint64, count=len(toks))
    n = min(ngram, len(toks))
    width = len(toks) - n + 1
    h = np.zeros(width, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            h = h * np.uint64(0x9E3779B97F4A7C15) + th[k : k + width] + np.uint64(k + 1)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return np.unique(h & MAX_HASH)


def rensa_signatures(flat: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int, rows: bool = True):
    from rensa import RMinHash

    m = RMinHash.digest_matrix_from_flat_token_hashes(flat, offsets.astype(np.uint64), num_perm, seed)
    return np.array(m.to_rows(), dtype=np.uint32) if rows else m


def cluster_pairs(n: int, a, b) -> set[tuple[int, int]]:
    uf = UnionFind(n)
    for x, y in zip(a, b, strict=True):
        uf.union(int(x), int(y))
    groups: dict[int, list[int]] = {}
    for i, r in enumerate(uf.roots().tolist()):
        groups.setdefault(r, []).append(i)
    return {(i, j) for g in groups.values() if len(g) > 1 for i, j in combinations(sorted(g), 2)}


def run_ours(shingles, p: MinhashParams) -> tuple[float, set]:
    t0 = time.perf_counter()
    sigs = p.hasher().signatures_from_shingles(shingles)
    a, b = candidate_pairs(sigs, p)
    found = cluster_pairs(len(shingles), a, b)
    return time.perf_counter() - t0, found


def datatrove_steps(tmp: Path, p: MinhashParams, hasher, cache: dict[str, np.ndarray]):
    import datatrove.pipeline.dedup.minhash as dtm
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig

    dtm.load_word_tokenizer = lambda language: None  # its word tokenizer (spaCy) is unused: shingles are ours

    cfg = MinhashConfig(
        n_grams=5,
        num_buckets=p.bands,
        hashes_per_bucket=p.rows,
        seed=p.seed,
        hash_config=HashConfig(precision=32, hash_fc="sha1"),
    )

    class SameShingles(MinhashDedupSignature):
        def get_shingles(self, text: str) -> np.ndarray:  # precomputed: time the MinHash machinery only
            return cache[text].reshape(-1, 1)

    sig = SameShingles(output_folder=str(tmp / "sigs"), config=cfg)
    used = p.bands * p.rows
    sig._parameters = (hasher.a[:used].reshape(1, -1), hasher.b[:used].reshape(1, -1))
    buckets = MinhashDedupBuckets(input_folder=str(tmp / "sigs"), output_folder=str(tmp / "buckets"), config=cfg)
    cluster = MinhashDedupCluster(input_folder=str(tmp / "buckets"), output_folder=str(tmp / "remove"), config=cfg)
    return sig, buckets, cluster


def run_datatrove(texts: list[str], shingles, p: MinhashParams, hasher) -> tuple[float, set, float]:
    from datatrove.data import Document as DtDoc

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sig, buckets, cluster = datatrove_steps(tmp, p, hasher, dict(zip(texts, shingles, strict=True)))
        docs = [DtDoc(text=t, id=str(i)) for i, t in enumerate(texts)]
        t0 = time.perf_counter()
        for _ in sig.run(iter(docs), 0, 1) or ():
            pass
        t_sig = time.perf_counter() - t0
        for rank in range(p.bands):  # datatrove needs one task per bucket
            for _ in buckets.run(None, rank, p.bands) or ():
                pass
        for _ in cluster.run(None, 0, 1) or ():
            pass
        elapsed = time.perf_counter() - t0
        a, b = [], []
        for f in sorted((tmp / "buckets").glob("*.dups")):
            data = f.read_bytes()
            for _f1, d1, _f2, d2 in struct.iter_unpack("<4I", data):
                a.append(d1)
                b.append(d2)
        return elapsed, cluster_pairs(len(texts), a, b), t_sig


def run_datasketch(shingles, p: MinhashParams) -> tuple[float, set, float]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    sketches = []
    for s in shingles:
        m = MinHash(num_perm=p.num_perm, seed=p.seed, hashfunc=lambda x: x, scheme="legacy")
        for h in s.tolist():
            m.update(h)
        sketches.append(m)
    t_sig = time.perf_counter() - t0
    lsh = MinHashLSH(threshold=p.threshold, num_perm=p.num_perm, params=(p.bands, p.rows))
    a, b = [], []
    for i, m in enumerate(sketches):
        if shingles[i].size == 0:
            continue
        for j in lsh.query(m):
            if m.jaccard(sketches[j]) >= p.threshold:
                a.append(j)
                b.append(i)
        lsh.insert(i, m)
    return time.perf_counter() - t0, cluster_pairs(len(shingles), a, b), t_sig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--num-perm", type=int, default=250)
    ap.add_argument("--bands", type=int, default=25)
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--repeats", type=int, default=3, help="best of N for the signature timings")
    ap.add_argument("--datasketch-docs", type=int, default=0, help="time datasketch on a prefix only (0: all)")
    args = ap.parse_args()
    p = MinhashParams(num_perm=args.num_perm, bands=args.bands, rows=args.rows, threshold=args.threshold)
    load_start = os.getloadavg()
    texts = corpus(args.docs)
    hasher = p.hasher()
    legacy = MinHasher(num_perm=p.num_perm, seed=p.seed, engine="numpy")
    batch_shingles(texts[:20])  # warm the power tables
    ours_e2e_s = legacy_e2e_s = t_shingle = t_legacy_shingle = rensa_e2e_s = float("inf")
    rensa_path = MinHasher(num_perm=p.num_perm, seed=p.seed, engine="rensa")
    for _ in range(args.repeats):  # interleaved, best of N: the machine is shared
        t0 = time.perf_counter()
        flat, offsets = batch_shingles(texts)
        t_shingle = min(t_shingle, time.perf_counter() - t0)
        t0 = time.perf_counter()
        hasher.signatures(texts)
        ours_e2e_s = min(ours_e2e_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        rensa_path.signatures(texts)
        rensa_e2e_s = min(rensa_e2e_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        old_shingles = [legacy_shingle_hashes(t) for t in texts]
        t_legacy_shingle = min(t_legacy_shingle, time.perf_counter() - t0)
        legacy.signatures_from_shingles(old_shingles)
        legacy_e2e_s = min(legacy_e2e_s, time.perf_counter() - t0)
    shingles = [flat[offsets[i] : offsets[i + 1]] for i in range(len(texts))]
    truth = similar_pairs(shingles, p.threshold)

    ours_sig_s = rensa_rows_s = rensa_matrix_s = dt_sig_s = ours_sig_only = rensa_engine_s = float("inf")
    rensa_engine = MinHasher(num_perm=p.num_perm, seed=p.seed, engine="rensa")
    for _ in range(args.repeats):
        t0 = time.perf_counter()  # like datatrove's stage 1: signatures + per-band sorted (hash, doc) runs
        sigs = hasher.signatures_flat(flat, offsets)
        bh = band_hashes(sigs, p.bands, p.rows)
        _runs = [np.argsort(bh[:, k], kind="stable") for k in range(p.bands)]
        ours_sig_s = min(ours_sig_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        rensa_signatures(flat, offsets, p.num_perm, p.seed)
        rensa_rows_s = min(rensa_rows_s, time.perf_counter() - t0)
        t0 = time.perf_counter()
        rensa_signatures(flat, offsets, p.num_perm, p.seed, rows=False)
        rensa_matrix_s = min(rensa_matrix_s, time.perf_counter() - t0)
        dt_e2e, dt_found, t_sig = run_datatrove(texts, shingles, p, legacy)
        dt_sig_s = min(dt_sig_s, t_sig)
        t0 = time.perf_counter()
        sigs = hasher.signatures_flat(flat, offsets)
        ours_sig_only = min(ours_sig_only, time.perf_counter() - t0)
        t0 = time.perf_counter()
        rensa_sigs = rensa_engine.signatures_flat(flat, offsets)
        rensa_engine_s = min(rensa_engine_s, time.perf_counter() - t0)
    seed_recall: dict[str, list[float]] = {hasher.engine: [], "rensa": []}
    for engine in seed_recall:  # the verify step at the threshold misses pairs just above it by chance
        for seed in range(1, 9):
            s8 = MinHasher(num_perm=p.num_perm, seed=seed, engine=engine).signatures_flat(flat, offsets)
            a8, b8 = candidate_pairs(s8, p)
            seed_recall[engine].append(
                precision_recall({(int(x), int(y)) for x, y in zip(a8, b8, strict=True)}, truth)[1]
            )
    va, vb = candidate_pairs(sigs, p)
    ra, rb = candidate_pairs(rensa_sigs, p)
    rensa_verified = {(int(x), int(y)) for x, y in zip(ra, rb, strict=True)}
    verified = {(int(x), int(y)) for x, y in zip(va, vb, strict=True)}
    ours_e2e, ours_found = run_ours(shingles, p)
    ours_e2e += t_shingle
    dt_e2e += t_shingle
    nds = min(args.datasketch_docs or len(texts), len(texts))
    _, _, ds_sig_prefix = run_datasketch(shingles[:nds], p)
    ds_sig_s = ds_sig_prefix * len(texts) / nds
    ds_e2e, ds_found, _ = run_datasketch(shingles, p) if nds == len(texts) else (float("nan"), set(), 0)

    def pr(found):
        prec, rec = precision_recall(found, truth)
        return {"precision": round(prec, 4), "recall": round(rec, 4), "pairs": len(found)}

    n = len(texts)
    load = os.getloadavg()[0]
    result = {
        "name": "dedup_minhash",
        "metric": "end_to_end_throughput_per_core",
        "unit": "docs/s (text -> shingles -> signatures, one process)",
        "ours": round(n / ours_e2e_s, 1),
        "baseline": round(n / legacy_e2e_s, 1),
        "baseline_name": "codekiln before (per-document regex + crc32 shingles, numpy MinHash), same process",
        "ratio": round(legacy_e2e_s / ours_e2e_s, 2),
        "end_to_end_with_rensa_engine_docs_per_s": round(n / rensa_e2e_s, 1),
        "ratio_vs_rensa_engine_end_to_end": round(rensa_e2e_s / ours_e2e_s, 2),
        "shingling_docs_per_s": {"ours_batch": round(n / t_shingle, 1), "before": round(n / t_legacy_shingle, 1)},
        "signatures_same_shingles_docs_per_s": {
            f"ours_{hasher.engine}_engine_numpy_out": round(n / ours_sig_only, 1),
            "ours_rensa_engine_numpy_out": round(n / rensa_engine_s, 1),
            "rensa_digest_matrix_plus_to_rows": round(n / rensa_rows_s, 1),
            "rensa_digest_matrix_only": round(n / rensa_matrix_s, 1),
            "ratio_vs_rensa_with_rows": round(rensa_rows_s / ours_sig_only, 2),
            "ratio_vs_rensa_matrix_only": round(rensa_matrix_s / ours_sig_only, 2),
            "note": "rensa's matrix has no buffer interface: a numpy signature needs to_rows (Python lists); "
            "matrix_only is rensa without getting its signatures out",
            "ours_with_band_runs": round(n / ours_sig_s, 1),
            "datatrove": round(n / dt_sig_s, 1),
            "datasketch_update": round(n / ds_sig_s, 1),
        },
        "end_to_end_s": {
            "ours": round(ours_e2e, 2),
            "datatrove": round(dt_e2e, 2),
            "datasketch_lsh": None if ds_e2e != ds_e2e else round(ds_e2e + t_shingle, 2),
        },
        "vs_exact_jaccard": {
            "true_pairs": len(truth),
            "unit": "pairs in the same cluster",
            "ours": pr(ours_found),
            "datatrove": pr(dt_found),
            "ours_verified_pairs": pr(verified),
            "rensa_engine_verified_pairs": pr(rensa_verified),
            "verified_pair_recall_seeds_1_to_8": {
                k: {"mean": round(float(np.mean(v)), 4), "min": round(min(v), 4)} for k, v in seed_recall.items()
            },
            "datasketch_lsh": pr(ds_found) if ds_found or nds == n else None,
        },
        "params": {
            "docs": n,
            "mean_doc_chars": round(sum(map(len, texts)) / n),
            "num_perm": p.num_perm,
            "bands": p.bands,
            "rows": p.rows,
            "threshold": p.threshold,
            "ngram": p.ngram,
            "datasketch_timed_docs": nds,
            "repeats": args.repeats,
            "corpus": "site-packages vendored + packages",
            "machine": f"{platform.processor() or platform.machine()}, shared 2-core VM (cpu-2core)",
            "engine": hasher.engine,
            "load_average_1m": round(load, 1),
            "load_average_1m_5m_15m_at_start": [round(x, 1) for x in load_start],
            "note": "absolute docs/s depend on the other jobs on this VM; ratios are measured in one process",
        },
    }
    print(
        f"{n} docs; end to end ours {result['ours']} docs/s, before {result['baseline']} docs/s; signatures "
        f"{result['signatures_same_shingles_docs_per_s']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
