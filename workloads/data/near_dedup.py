"""Near dedup with MinHash LSH: in-process (``near_dedup``) and the distributed four stages.

Distributed (each a stage, file-based, datatrove's shape):

1. ``minhash_signatures`` (N shards): pass documents through; write per shard the
   signatures, the priority keys, and one band-hash file per band sorted by hash.
2. ``minhash_buckets`` (any shards; band ``b`` goes to shard ``b % shards``): merge the
   sorted per-shard runs of a band, emit pairs that collide and whose signatures agree
   on at least ``threshold`` of the values.
3. ``minhash_cluster`` (any shards): connected components over all pairs; in each component
   the document with the best priority (stars, recency, path) survives; components are split
   over the shards by label; each writes the indices to remove per signature shard.
4. ``minhash_filter`` (N shards, same sharding as 1, after ``read_stage``): drop them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from codekiln.workloads.atomic_io import atomic_path, atomic_write_bytes
from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document, priority_key
from codekiln.workloads.data.minhash import (
    band_hashes,
    component_labels,
    components_to_remove,
    equal_run_pairs,
    estimated_jaccard,
)

MinhashParams = step_params.MinhashParams


def candidate_pairs(sigs: np.ndarray, p: MinhashParams) -> tuple[np.ndarray, np.ndarray]:
    """Verified duplicate pairs (i, j) among the rows of ``sigs`` (in-memory LSH)."""
    bh = band_hashes(sigs, p.bands, p.rows)
    pa, pb = [], []
    for band in range(p.bands):
        a, b = equal_run_pairs(bh[:, band])
        pa.append(a)
        pb.append(b)
    a, b = np.concatenate(pa), np.concatenate(pb)
    if a.size:
        uniq = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
        a, b = uniq[:, 0], uniq[:, 1]
        if p.verify:
            ok = estimated_jaccard(sigs[a], sigs[b]) >= p.threshold
            a, b = a[ok], b[ok]
    return a, b


def _rank_by_priority(keys: list) -> np.ndarray:
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys))
    return rank


class NearDedup(Step):
    """In-process MinHash LSH dedup of one shard (buffers its documents)."""

    name = "near_dedup"
    Params = MinhashParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        buffered = list(docs)
        sigs = self.params.hasher().signatures([d.text for d in buffered])
        a, b = candidate_pairs(sigs, self.params)
        drop = set(
            components_to_remove(
                len(buffered), a, b, _rank_by_priority([[*priority_key(d), d.id] for d in buffered])
            ).tolist()
        )
        for i, d in enumerate(buffered):
            if i in drop:
                self.drop(d, "near_duplicate")
            else:
                yield d


def _sig_dir(step: Step, stage: str) -> Path:
    return step.ctx.stage_dir(stage) / "minhash"


class MinhashSignatures(Step):
    """Stage 1: documents pass through; signatures, keys and sorted band files are written per shard."""

    name = "minhash_signatures"
    Params = MinhashParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        hasher, texts, keys = self.params.hasher(), [], []
        for d in docs:
            texts.append(d.text)
            keys.append([*priority_key(d), d.id])
            yield d
        sigs = hasher.signatures(texts) if texts else np.empty((0, self.params.num_perm), np.uint32)
        folder, shard = _sig_dir(self, self.ctx.stage), self.ctx.shard_name()
        _save_npy(folder / "sigs" / f"{shard}.npy", sigs)
        bh = band_hashes(sigs, self.params.bands, self.params.rows)
        for band in range(self.params.bands):
            order = np.argsort(bh[:, band], kind="stable")
            rec = np.stack([bh[order, band], order.astype(np.uint64)], axis=1)
            _save_npy(folder / f"band-{band:03d}" / f"{shard}.npy", rec)
        # priority keys as JSON lines + their byte offsets: the cluster stage parses only component members' keys
        lines = [json.dumps(k).encode("utf-8") + b"\n" for k in keys]
        offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in lines], out=offsets[1:])
        atomic_write_bytes(folder / "keys" / f"{shard}.jsonl", b"".join(lines))
        _save_npy(folder / "keys" / f"{shard}.offsets.npy", offsets)


class _FromSignatures(Step):
    Params = step_params.MinhashStageParams

    def sig_shards(self) -> int:
        n = self.ctx.stage_shards.get(self.params.signatures_stage)
        if n is None:
            raise ValueError(f"{self.name}: params.signatures_stage {self.params.signatures_stage!r} is not a stage")
        return n


class MinhashBuckets(_FromSignatures):
    """Stage 2: per band, merge the sorted runs of every shard and write verified duplicate pairs."""

    name = "minhash_buckets"

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        folder = _sig_dir(self, self.params.signatures_stage)
        n = self.sig_shards()
        sigs = [np.load(folder / "sigs" / f"shard-{s:05d}.npy", mmap_mode="r") for s in range(n)]
        for band in range(rank, self.params.bands, world_size):
            runs = [np.load(folder / f"band-{band:03d}" / f"shard-{s:05d}.npy") for s in range(n)]
            shard_of = np.concatenate([np.full(len(r), s, dtype=np.int64) for s, r in enumerate(runs)])
            rec = np.concatenate(runs) if runs else np.empty((0, 2), np.uint64)
            i, j = equal_run_pairs(rec[:, 0])  # stable sort of concatenated sorted runs = k-way merge
            sa, ia = shard_of[i], rec[i, 1].astype(np.int64)
            sb, ib = shard_of[j], rec[j, 1].astype(np.int64)
            if self.params.verify and i.size:
                ok = np.zeros(i.size, dtype=bool)
                for x in np.unique(sa).tolist():  # vectorised per pair of shards
                    for u in np.unique(sb[sa == x]).tolist():
                        m = (sa == x) & (sb == u)
                        ok[m] = estimated_jaccard(sigs[x][ia[m]], sigs[u][ib[m]]) >= self.params.threshold
                sa, ia, sb, ib = sa[ok], ia[ok], sb[ok], ib[ok]
            self.stats.rejects["duplicate_pairs"] += int(sa.size)
            _save_npy(folder / "pairs" / f"band-{band:03d}.npy", np.stack([sa, ia, sb, ib], axis=1).astype(np.int64))


class MinhashCluster(_FromSignatures):
    """Stage 3 (any shards): connected components over all pairs; in each component the document with the
    best priority survives. Every shard computes the components (scipy, linear in pairs); shard ``r`` ranks
    the members of the components with ``label % shards == r`` and writes their removals per signature shard
    (``remove/shard-S/part-R.npy``). Only component members' priority keys are sorted."""

    name = "minhash_cluster"

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        folder = _sig_dir(self, self.params.signatures_stage)
        n_sig = self.sig_shards()
        sizes = [np.load(folder / "sigs" / f"shard-{s:05d}.npy", mmap_mode="r").shape[0] for s in range(n_sig)]
        offsets = np.cumsum([0, *sizes])
        pairs = [np.load(f) for f in sorted((folder / "pairs").glob("band-*.npy"))]
        allp = np.concatenate(pairs) if pairs else np.empty((0, 4), np.int64)
        a = offsets[allp[:, 0]] + allp[:, 1]
        b = offsets[allp[:, 2]] + allp[:, 3]
        labels = component_labels(int(offsets[-1]), a, b)
        members = np.flatnonzero(labels >= 0)
        members = members[labels[members] % world_size == rank]
        shard_of = np.searchsorted(offsets, members, side="right") - 1
        keys: list = [None] * members.size
        for s in np.unique(shard_of).tolist():
            raw = (folder / "keys" / f"shard-{s:05d}.jsonl").read_bytes()
            at = np.load(folder / "keys" / f"shard-{s:05d}.offsets.npy")
            for i in np.flatnonzero(shard_of == s).tolist():
                k = int(members[i] - offsets[s])
                keys[i] = json.loads(raw[at[k] : at[k + 1]])
        rank_of = np.zeros(int(offsets[-1]), dtype=np.int64)
        rank_of[members] = _rank_by_priority(keys)
        drop = components_to_remove(int(offsets[-1]), a, b, rank_of, labels=labels, members=members)
        for s in range(n_sig):
            local = drop[(drop >= offsets[s]) & (drop < offsets[s + 1])] - offsets[s]
            _save_npy(folder / "remove" / f"shard-{s:05d}" / f"part-{rank:05d}.npy", local.astype(np.int64))
        self.stats.rejects["near_duplicate_found"] += int(drop.size)


class MinhashFilter(_FromSignatures):
    """Stage 4 (same sharding as stage 1, after ``read_stage``): drop the documents stage 3 chose."""

    name = "minhash_filter"

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        folder = _sig_dir(self, self.params.signatures_stage) / "remove"
        removed: dict[int, set[int]] = {}
        for d in docs:
            if d.origin is None or d.origin[0] != self.params.signatures_stage:
                raise ValueError("minhash_filter: documents must come from read_stage of params.signatures_stage")
            shard = d.origin[1]
            if shard not in removed:  # the parts every cluster shard wrote for this signature shard
                parts = sorted((folder / f"shard-{shard:05d}").glob("part-*.npy"))
                removed[shard] = {int(i) for f in parts for i in np.load(f).tolist()}
            if d.origin[2] in removed[shard]:
                self.drop(d, "near_duplicate")
            else:
                yield d


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path, keep_suffix=True) as tmp:
        np.save(tmp, arr)
