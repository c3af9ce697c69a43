"""Decontamination: drop training samples that share n-grams with the evaluation sets in use.

Two signals, either one contaminates: a word n-gram (default 13 words, lower-cased ``\\w+`` tokens)
and a window of consecutive code lines (default 10; lines stripped, inner whitespace collapsed,
blank lines skipped). Benchmark items shorter than the window match as a whole when they have at
least ``minItemLines`` lines (HumanEval's canonical solutions are often 3–8 lines). Works on any
document shape — SFT chats, DPO pairs, RL task rows — through ``fields``. Every dropped document is
listed with the benchmark item and the matching text in ``<stage>/decontam/<shard>.jsonl``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import AtomicJsonlWriter, Document
from codekiln.workloads.data.synthesis.params import DecontamBenchmark, DecontaminateParams

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _lines(text: str) -> list[str]:
    return [_SPACE.sub(" ", line.strip()) for line in text.splitlines() if len(line.strip()) > 1]


@dataclass(frozen=True)
class Match:
    benchmark: str
    item: str
    kind: str  # "word_ngram" | "line_window"
    text: str


class BenchmarkIndex:
    """Hashed word n-grams and line windows of benchmark texts → (benchmark, item id)."""

    def __init__(self, word_ngram: int = 13, line_window: int = 10, min_item_lines: int = 4):
        self.n, self.w, self.min_lines = word_ngram, line_window, min_item_lines
        self.grams: dict[int, tuple[str, str]] = {}
        self.windows: dict[int, tuple[str, str]] = {}
        self.window_sizes: set[int] = set()
        self.items = 0

    def add(self, benchmark: str, item: str, text: str) -> None:
        """Index one benchmark text (a prompt, a solution, a test)."""
        self.items += 1
        words = _words(text)
        for i in range(len(words) - self.n + 1):
            self.grams.setdefault(hash(" ".join(words[i:i + self.n])), (benchmark, item))
        lines = _lines(text)
        size = self.w if len(lines) >= self.w else (len(lines) if len(lines) >= self.min_lines else 0)
        if size:
            self.window_sizes.add(size)
            for i in range(len(lines) - size + 1):
                self.windows.setdefault(hash("\n".join(lines[i:i + size])), (benchmark, item))

    def match(self, text: str) -> Match | None:
        """The first benchmark overlap in ``text``, or None."""
        words = _words(text)
        for i in range(len(words) - self.n + 1):
            gram = " ".join(words[i:i + self.n])
            if (hit := self.grams.get(hash(gram))) is not None:
                return Match(hit[0], hit[1], "word_ngram", gram)
        lines = _lines(text)
        for size in sorted(self.window_sizes, reverse=True):
            for i in range(len(lines) - size + 1):
                window = "\n".join(lines[i:i + size])
                if (hit := self.windows.get(hash(window))) is not None:
                    return Match(hit[0], hit[1], "line_window", window[:300])
        return None


def benchmark_texts(bench: DecontamBenchmark) -> Iterator[tuple[str, str, str]]:
    """(benchmark name, item id, text) of an evaluation set."""
    if bench.source == "humaneval":
        from codekiln.workloads.sandbox.humaneval import load_problems

        for p in load_problems():
            for text in (p.prompt, p.canonical_solution, p.prompt + p.canonical_solution, p.test):
                yield "humaneval", p.task_id, text
        return
    path = Path(bench.path or "")
    if not path.exists():
        raise ValueError(f"decontaminate.benchmarks: {path} does not exist")
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    name = path.name
    for f in files:
        if bench.source == "jsonl":
            for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                item = str(row.get("id", f"{f.name}:{n}"))
                for key in ("prompt", "reference", "setup", "tests", "canonical_solution", "test"):
                    if row.get(key):
                        yield name, item, flatten(row[key])
                if row.get("prompt") and row.get("reference"):
                    yield name, item, row["prompt"] + row["reference"]
        else:
            yield name, f.name, f.read_text(errors="replace")


def build_index(params: DecontaminateParams) -> BenchmarkIndex:
    index = BenchmarkIndex(params.word_ngram, params.line_window, params.min_item_lines)
    for bench in params.benchmarks:
        for name, item, text in benchmark_texts(bench):
            index.add(name, item, text)
    return index


def flatten(value: Any) -> str:
    """Strings as is; lists joined by newlines; chats (``[{role, content}]``) as their contents; JSON otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(flatten(v.get("content", "") if isinstance(v, dict) else v) for v in value)
    if value is None:
        return ""
    return json.dumps(value)


def document_texts(doc: Document, fields: list[str]) -> Iterator[tuple[str, str]]:
    for f in fields:
        if f == "text":
            yield f, doc.text
        elif f in doc.metadata:
            yield f, flatten(doc.metadata[f])


class Decontaminate(Step):
    """Drop documents overlapping the evaluation sets; write the report of what was dropped and why."""

    name = "decontaminate"
    Params = DecontaminateParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        index = build_index(self.params)
        self.stats.counters["benchmark_items"] = index.items
        report = AtomicJsonlWriter(self.ctx.stage_dir() / "decontam" / f"{self.ctx.shard_name(rank)}.jsonl")
        try:
            for doc in docs:
                hit = next(((f, m) for f, t in document_texts(doc, self.params.fields) if (m := index.match(t))),
                           None)
                if hit is None:
                    yield doc
                    continue
                field_name, m = hit
                report.write({"id": doc.id, "field": field_name, "benchmark": m.benchmark, "item": m.item,
                              "kind": m.kind, "match": m.text})
                self.drop(doc, f"contaminated_{m.benchmark}", {"item": m.item, "kind": m.kind})
        except BaseException:
            report.discard()
            raise
        report.close()
