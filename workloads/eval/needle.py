"""Seed-Coder's Needle-in-the-Code: a small function buried at a given depth of a long code context.

The haystack is real code (default: the Python standard library, files in a seeded order) cut to the
target token length; the needle is a function with a fresh name and random constants; the question
asks the model to call it (``assert needle_xxx(7) == `` → the model must complete the value).
Accuracy is exact match of the first line, per context length.
"""

from __future__ import annotations

import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from codekiln.workloads.eval.config import NeedleEvalConfig


@dataclass(frozen=True)
class NeedleExample:
    context_tokens: int
    depth: float
    prompt: str
    expected: str


def _filler_files(cfg: NeedleEvalConfig) -> list[Path]:
    if cfg.filler_paths:
        files = []
        for spec in cfg.filler_paths:
            p = Path(spec)
            files += sorted(f for f in p.rglob("*.py") if f.is_file()) if p.is_dir() else [p]
        if not files:
            raise ValueError(f"eval.needle.fillerPaths: no files under {cfg.filler_paths}")
        return files
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(stdlib.glob("*.py"))


def _needle(rng: random.Random) -> tuple[str, str, str]:
    name = "compute_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
    a, b, x = rng.randint(2, 9), rng.randint(1, 50), rng.randint(2, 20)
    code = f"\n\ndef {name}(x):\n    \"\"\"Scale and shift.\"\"\"\n    return x * {a} + {b}\n\n\n"
    question = f"\n\n# Call the function {name} defined above.\nassert {name}({x}) == "
    return code, question, str(x * a + b)


def needle_examples(cfg: NeedleEvalConfig, lengths: list[int], count_tokens, seed: int) -> list[NeedleExample]:
    """Examples for every (length, depth, trial); ``count_tokens(text)`` measures length in the model's tokens."""
    rng = random.Random(seed)
    files = _filler_files(cfg)
    rng.shuffle(files)
    pool = "".join(f.read_text(errors="replace") for f in files[:40])
    ratio = max(1.0, len(pool[:20000]) / max(1, count_tokens(pool[:20000])))  # characters per token
    out = []
    for length in lengths:
        for depth in cfg.depths:
            for _ in range(cfg.trials):
                code, question, expected = _needle(rng)
                budget = length - count_tokens(code + question) - 8
                if budget <= 0:
                    continue
                start = rng.randrange(0, max(1, len(pool) - int(budget * ratio) - 1))
                hay = pool[start:start + int(budget * ratio)]
                while count_tokens(hay) > budget and len(hay) > 16:
                    hay = hay[: int(len(hay) * 0.9)]
                cut = hay.rfind("\n", 0, int(len(hay) * depth) + 1)
                cut = cut + 1 if cut >= 0 else 0
                out.append(NeedleExample(length, depth, hay[:cut] + code + hay[cut:] + question, expected))
    return out


def run_needle(cfg: NeedleEvalConfig, generator, lengths: list[int], seed: int) -> dict:
    """Accuracy per context length (and overall) of calling the buried function."""
    examples = needle_examples(cfg, lengths, generator.count_tokens, seed)
    outs = generator.generate([e.prompt for e in examples], n=1, temperature=0.0, top_p=1.0, max_tokens=8,
                              seed=seed, stop=["\n"])
    per_len: dict[int, list[bool]] = {}
    for e, o in zip(examples, outs, strict=True):
        per_len.setdefault(e.context_tokens, []).append(o[0].strip() == e.expected)
    return {"benchmark": "needle_in_code", "mode": "greedy", "seed": seed, "examples": len(examples),
            "accuracy": sum(sum(v) for v in per_len.values()) / max(1, len(examples)),
            **{f"accuracy@{n}": sum(v) / len(v) for n, v in sorted(per_len.items())}}
