"""FIM single-line completion: hide one line of a held-out file, ask for it in PSM format, exact match."""

from __future__ import annotations

import glob
import json
import random
from dataclasses import dataclass
from pathlib import Path

from codekiln.workloads.eval.config import FimEvalConfig
from codekiln.workloads.special_tokens import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

CODE_SUFFIXES = {".py", ".js", ".ts", ".go", ".rs", ".java", ".c", ".h", ".cc", ".cpp", ".rb", ".sh", ".lua"}


@dataclass(frozen=True)
class FimExample:
    source: str
    prefix: str
    middle: str
    suffix: str

    def prompt(self) -> str:
        return f"{FIM_PREFIX}{self.prefix}{FIM_SUFFIX}{self.suffix}{FIM_MIDDLE}"


def read_held_out(paths: list[str]) -> list[tuple[str, str]]:
    """(source, text) of every file under ``paths``: code files, or JSONL documents with a ``text`` field."""
    files: list[Path] = []
    for spec in paths:
        p = Path(spec)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and (f.suffix in CODE_SUFFIXES or
                                                                         f.suffix == ".jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            files += sorted(Path(f) for f in glob.glob(spec, recursive=True) if Path(f).is_file())
    if not files:
        raise ValueError(f"eval.fim.paths: no files found under {paths}")
    out = []
    for f in files:
        if f.suffix == ".jsonl":
            for n, line in enumerate(f.read_text(errors="replace").splitlines()):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and isinstance(row.get("text"), str):
                    out.append((f"{f}:{row.get('id', n)}", row["text"]))
        else:
            out.append((str(f), f.read_text(errors="replace")))
    return out


def fim_examples(docs: list[tuple[str, str]], cfg: FimEvalConfig, seed: int) -> list[FimExample]:
    """One hidden line per document (round-robin over documents until ``cfg.examples``), seeded."""
    rng = random.Random(seed)
    candidates = []
    for source, text in docs:
        lines = text.splitlines(keepends=True)
        idx = [i for i, line in enumerate(lines) if len(line.strip()) >= 4]
        if idx:
            candidates.append((source, lines, idx))
    out: list[FimExample] = []
    while candidates and len(out) < cfg.examples:
        for source, lines, idx in candidates:
            if len(out) == cfg.examples:
                break
            i = rng.choice(idx)
            line = lines[i]
            middle = line.rstrip("\r\n")
            prefix = "".join(lines[:i])
            suffix = line[len(middle):] + "".join(lines[i + 1:])
            prefix = prefix[-cfg.max_prefix_chars:] if cfg.max_prefix_chars else ""
            suffix = suffix[: cfg.max_suffix_chars]
            out.append(FimExample(source, prefix, middle, suffix))
        if len(out) >= sum(len(c[2]) for c in candidates):
            break
    return out


def run_fim(cfg: FimEvalConfig, generator, seed: int) -> dict:
    """Exact match (whitespace-stripped) of the generated line; greedy."""
    examples = fim_examples(read_held_out(cfg.paths), cfg, seed)
    outs = generator.generate([e.prompt() for e in examples], n=1, temperature=0.0, top_p=1.0,
                              max_tokens=cfg.max_tokens, seed=seed, stop=["\n"])
    hits = [o[0].strip() == e.middle.strip() for o, e in zip(outs, examples, strict=True)]
    return {"benchmark": "fim_line", "mode": "greedy", "seed": seed, "examples": len(examples),
            "exact_match": sum(hits) / len(hits) if hits else 0.0}
