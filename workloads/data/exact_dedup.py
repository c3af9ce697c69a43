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


class ExactDedupHashes(Step):
    """Stage A: pass documents through and write their hash records to ``<stage>/exact_hashes/``."""

    name = "exact_dedup_hashes"
    Params = ExactParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        writer = AtomicJsonlWriter(self.ctx.stage_dir() / "exact_hashes" / f"{self.ctx.shard_name()}.jsonl")
        try:
            for i, d in enumerate(docs):
                writer.write(hash_record(d, rank, i))
                yield d
        except BaseException:
            writer.discard()
            raise
        writer.close()


class ExactDedupFilter(Step):
    """Stage B: drop documents (read with ``read_stage`` from stage A) that lost to a higher-priority copy."""

    name = "exact_dedup_filter"

    Params = step_params.ExactDedupFilterParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        folder: Path = self.ctx.stage_dir(self.params.hashes_stage) / "exact_hashes"
        records = []
        for f in sorted(folder.glob("shard-*.jsonl")):
            with open(f, encoding="utf-8") as fh:
                records.extend(json.loads(line) for line in fh if line.strip())
        keep = survivors(records, self.params.level)
        for d in docs:
            if d.origin is None or d.origin[0] != self.params.hashes_stage:
                raise ValueError("exact_dedup_filter: documents must come from read_stage of params.hashes_stage")
            if (d.origin[1], d.origin[2]) in keep:
                yield d
            else:
                self.drop(d, f"exact_duplicate_{self.params.level}")
