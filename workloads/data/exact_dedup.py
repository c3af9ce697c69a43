"""Exact dedup by SHA-256 at file or repository level.

Survivor priority (documented, deterministic): most stars, then most recent
(``updated_ts``), then the smallest path (then id). At repository level a repository's
hash is the SHA-256 of its sorted (path, file hash) list, and whole repositories that
duplicate a higher-priority one are dropped.

Modes: ``exact_dedup`` (in-process, buffers the shard) and the distributed pair
``exact_dedup_hashes`` (stage A, writes hash records per shard) → ``exact_dedup_filter``
(stage B reading stage A with ``read_stage``; every shard reads all hash records).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from codekiln.workloads.atomic_io import atomic_path
from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import AtomicJsonlWriter, Document, priority_key

ExactParams = step_params.ExactParams


def hash_record(doc: Document, shard: int, index: int) -> dict:
    """What the filter needs to know about one document."""
    return {
        "shard": shard,
        "index": index,
        "sha": hashlib.sha256(doc.text.encode("utf-8", "surrogatepass")).hexdigest(),
        "repo": str(doc.metadata.get("repo", "")),
        "path": str(doc.metadata.get("path", doc.id)),
        "key": [*priority_key(doc), doc.id],
    }


def survivors(records: list[dict], level: str) -> set[tuple[int, int]]:
    """The (shard, index) pairs that survive exact dedup."""
    if level == "file":
        best: dict[str, dict] = {}
        for r in records:
            cur = best.get(r["sha"])
            if cur is None or r["key"] < cur["key"]:
                best[r["sha"]] = r
        return {(r["shard"], r["index"]) for r in best.values()}
    by_repo: dict[str, list[dict]] = {}
    for r in records:
        by_repo.setdefault(r["repo"], []).append(r)
    best_repo: dict[str, tuple[list, str]] = {}
    for repo, rs in by_repo.items():
        digest = hashlib.sha256("\n".join(sorted(f"{r['path']}\t{r['sha']}" for r in rs)).encode()).hexdigest()
        key = [*min(r["key"] for r in rs)[:2], repo]
        if digest not in best_repo or key < best_repo[digest][0]:
            best_repo[digest] = (key, repo)
    winners = {repo for _, repo in best_repo.values()}
    return {(r["shard"], r["index"]) for r in records if r["repo"] in winners}


class ExactDedup(Step):
    """In-process exact dedup of one shard's stream."""

    name = "exact_dedup"
    Params = ExactParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        buffered = list(docs)
        keep = survivors([hash_record(d, 0, i) for i, d in enumerate(buffered)], self.params.level)
        for i, d in enumerate(buffered):
            if (0, i) in keep:
                yield d
            else:
                self.drop(d, f"exact_duplicate_{self.params.level}")


def sha64(hexdigest: str) -> int:
    """The first 8 bytes of a SHA-256 as an unsigned int (the sharded filter's join key)."""
    return int(hexdigest[:16], 16)


class ExactDedupHashes(Step):
    """Stage A: pass documents through; per shard write hash records (JSONL), their byte offsets and a
    compact ``uint64`` array of SHA-256 prefixes in document order (``<stage>/exact_hashes/``)."""

    name = "exact_dedup_hashes"
    Params = ExactParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        folder = self.ctx.stage_dir() / "exact_hashes"
        shard = self.ctx.shard_name()
        writer = AtomicJsonlWriter(folder / f"{shard}.jsonl")
        keys: list[int] = []
        offsets: list[int] = [0]
        try:
            for i, d in enumerate(docs):
                rec = hash_record(d, rank, i)
                line = json.dumps(rec, ensure_ascii=False)
                writer.write_line(line)
                keys.append(sha64(rec["sha"]))
                offsets.append(offsets[-1] + len(line.encode("utf-8")) + 1)
                yield d
        except BaseException:
            writer.discard()
            raise
        writer.close()
        _save_npy(folder / f"{shard}.sha64.npy", np.array(keys, dtype=np.uint64))
        _save_npy(folder / f"{shard}.offsets.npy", np.array(offsets, dtype=np.int64))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path, keep_suffix=True) as tmp:
        np.save(tmp, arr)


def _read_records(path: Path, offsets: np.ndarray, rows: np.ndarray) -> list[dict]:
    out = []
    with open(path, "rb") as fh:
        for r in rows.tolist():
            fh.seek(int(offsets[r]))
            out.append(json.loads(fh.readline()))
    return out


def file_level_survivors(folder: Path, shards: int, shard: int) -> set[int]:
    """Indices of shard ``shard``'s documents that survive file-level exact dedup.

    Sharded join: the shard's own SHA-256 prefixes are matched against every shard's compact ``uint64``
    array (memory-mapped, 8 bytes per document); only the records of hashes seen more than once are read.
    No shard holds every hash record.
    """
    own = np.load(folder / f"shard-{shard:05d}.sha64.npy")
    uniq = np.sort(own)
    counts = np.zeros(uniq.size, dtype=np.int64)
    hits: dict[int, np.ndarray] = {}
    for s in range(shards):
        other = np.load(folder / f"shard-{s:05d}.sha64.npy", mmap_mode="r")
        if not other.size or not uniq.size:
            continue
        pos = np.searchsorted(uniq, other)
        pos[pos == uniq.size] = 0
        match = uniq[pos] == other
        np.add.at(counts, pos[match], 1)
        hits[s] = np.flatnonzero(match)
    dup_keys = uniq[counts > 1]
    if not dup_keys.size:
        return set(range(own.size))
    best: dict[str, tuple] = {}
    for s, rows in hits.items():
        other = np.load(folder / f"shard-{s:05d}.sha64.npy", mmap_mode="r")
        rows = rows[np.isin(other[rows], dup_keys)]
        if not rows.size:
            continue
        offsets = np.load(folder / f"shard-{s:05d}.offsets.npy")
        for r in _read_records(folder / f"shard-{s:05d}.jsonl", offsets, rows):
            cand = (r["key"], r["shard"], r["index"])
            if r["sha"] not in best or cand < best[r["sha"]]:
                best[r["sha"]] = cand
    losers = set(np.flatnonzero(np.isin(own, dup_keys)).tolist())
    winners = {idx for _, sh, idx in best.values() if sh == shard}
    return (set(range(own.size)) - losers) | winners


class ExactDedupFilter(Step):
    """Stage B: drop documents (read with ``read_stage`` from stage A) that lost to a higher-priority copy.

    File level: a sharded join on SHA-256 prefixes (``file_level_survivors``); repository level needs every
    repository's file list and reads all hash records.
    """

    name = "exact_dedup_filter"

    Params = step_params.ExactDedupFilterParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        folder: Path = self.ctx.stage_dir(self.params.hashes_stage) / "exact_hashes"
        n_shards = self.ctx.stage_shards.get(self.params.hashes_stage) or len(list(folder.glob("shard-*.jsonl")))
        keep: dict[int, set[int]] = {}
        repo_keep: set[tuple[int, int]] | None = None
        for d in docs:
            if d.origin is None or d.origin[0] != self.params.hashes_stage:
                raise ValueError("exact_dedup_filter: documents must come from read_stage of params.hashes_stage")
            shard, index = d.origin[1], d.origin[2]
            if self.params.level == "file":
                if shard not in keep:
                    keep[shard] = file_level_survivors(folder, n_shards, shard)
                kept = index in keep[shard]
            else:
                if repo_keep is None:
                    records = []
                    for f in sorted(folder.glob("shard-*.jsonl")):
                        with open(f, encoding="utf-8") as fh:
                            records.extend(json.loads(line) for line in fh if line.strip())
                    repo_keep = survivors(records, "repo")
                kept = (shard, index) in repo_keep
            if kept:
                yield d
            else:
                self.drop(d, f"exact_duplicate_{self.params.level}")
