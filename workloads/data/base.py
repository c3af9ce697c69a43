"""Step and filter bases: one contract (documents in, documents out) with stats and timing."""

from __future__ import annotations

import abc
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from codekiln.workloads.data import step_params
from codekiln.workloads.data.document import AtomicJsonlWriter, Document
from codekiln.workloads.schema import ConfigModel

NoParams = step_params.NoParams


@dataclass
class StepStats:
    """Per-step counters, mergeable across shards."""

    name: str
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    time_s: float = 0.0
    rejects: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)  # step-specific totals (e.g. LLM tokens, cache hits)

    def merge(self, other: StepStats) -> None:
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.time_s += other.time_s
        self.rejects.update(other.rejects)
        self.counters.update(other.counters)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "docs_in": self.docs_in,
            "docs_out": self.docs_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "time_s": round(self.time_s, 4),
            "rejects": dict(self.rejects),
            "counters": dict(self.counters),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepStats:
        return cls(
            d["name"],
            d["docs_in"],
            d["docs_out"],
            d["bytes_in"],
            d["bytes_out"],
            d["time_s"],
            Counter(d.get("rejects", {})),
            Counter(d.get("counters", {})),
        )


@dataclass(frozen=True)
class Reject:
    """A verdict to drop a document: the rule that fired and the value that tripped it (for the audit trail)."""

    rule: str
    value: Any = None


@dataclass
class StageContext:
    """Where a shard of a stage runs: folders, rank, and the rejects sink for malformed records."""

    output_dir: Path
    stage: str
    rank: int = 0
    world_size: int = 1
    stage_shards: dict[str, int] = field(default_factory=dict)
    rejects: AtomicJsonlWriter | None = None
    dropped: Any = None  # rejects.RejectsWriter: one record per dropped document

    def record_drop(self, doc_id: str, path: str | None, step: str, rule: str, value: Any = None) -> None:
        """Append a drop record to this shard's audit trail (no-op without one)."""
        if self.dropped is not None:
            self.dropped.write(doc_id, path, step, rule, value)

    def stage_dir(self, name: str | None = None) -> Path:
        return self.output_dir / (name or self.stage)

    def shard_name(self, rank: int | None = None) -> str:
        return f"shard-{self.rank if rank is None else rank:05d}"

    def resolve(self, path: str) -> Path:
        """A path relative to ``output_dir`` (absolute paths pass through)."""
        p = Path(path)
        return p if p.is_absolute() else self.output_dir / p

    def reject(self, source: str, reason: str, record: Any = None) -> None:
        """Record a malformed input (never raises)."""
        if self.rejects is not None:
            self.rejects.write(
                {"source": source, "reason": reason, "record": None if record is None else str(record)[:2000]}
            )


class Step(abc.ABC):
    """A block: ``run(docs, rank, world_size) -> docs``. Subclasses set ``Params`` and implement ``run``."""

    Params: ClassVar[type[ConfigModel]] = NoParams
    name: ClassVar[str] = "step"
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules this step needs

    def __init__(self, params: ConfigModel, ctx: StageContext) -> None:
        self.params = params
        self.ctx = ctx
        self.stats = StepStats(self.name)

    @abc.abstractmethod
    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        """Documents of shard ``rank`` of ``world_size`` in, documents out."""

    def drop(self, doc: Document | str, rule: str, value: Any = None, *, path: str | None = None) -> None:
        """Count a dropped document under ``rule`` and record it in the audit trail.

        Args:
            doc: the document, or its id (a file a reader skipped).
            rule: why (the stats key).
            value: the value that tripped the rule (JSON-able, kept short).
            path: the file path when ``doc`` is an id.
        """
        self.stats.rejects[rule] += 1
        if isinstance(doc, Document):
            doc_id, path = doc.id, path or doc.metadata.get("path")
        else:
            doc_id = doc
        self.ctx.record_drop(doc_id, None if path is None else str(path), self.name, rule, value)

    def __call__(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        """Run with stats: docs/bytes in and out, and time spent in this step only."""
        stats = self.stats
        upstream = [0.0]

        def counted() -> Iterator[Document]:
            it = iter(docs)
            while True:
                t0 = time.perf_counter()
                try:
                    doc = next(it)
                except StopIteration:
                    upstream[0] += time.perf_counter() - t0
                    return
                upstream[0] += time.perf_counter() - t0
                stats.docs_in += 1
                stats.bytes_in += len(doc.text.encode("utf-8", "surrogatepass"))
                yield doc

        t0 = time.perf_counter()
        out = iter(self.run(counted(), rank, world_size))
        stats.time_s += time.perf_counter() - t0 - upstream[0]
        while True:
            t0, u0 = time.perf_counter(), upstream[0]
            try:
                doc = next(out)
            except StopIteration:
                stats.time_s += time.perf_counter() - t0 - (upstream[0] - u0)
                return
            stats.time_s += time.perf_counter() - t0 - (upstream[0] - u0)
            stats.docs_out += 1
            stats.bytes_out += len(doc.text.encode("utf-8", "surrogatepass"))
            yield doc


class Filter(Step):
    """A step that keeps or drops documents: implement ``keep(doc) -> True | False | reason``."""

    name = "filter"

    @abc.abstractmethod
    def keep(self, doc: Document) -> bool | str | Reject:
        """True to keep; False, a reject reason or a ``Reject(rule, value)`` to drop."""

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        for doc in docs:
            try:
                verdict = self.keep(doc)
            except Exception as exc:  # a document that breaks a rule is a reject, never a crashed shard
                verdict = Reject(f"error_{type(exc).__name__}", str(exc)[:200])
                self.ctx.reject(doc.id, f"{self.name}: {type(exc).__name__}: {exc}")
            if verdict is True:
                yield doc
            elif isinstance(verdict, Reject):
                self.drop(doc, verdict.rule, verdict.value)
            else:
                self.drop(doc, verdict if isinstance(verdict, str) else self.name)
