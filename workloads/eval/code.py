"""Execution benchmarks: pass@k on HumanEval and on task JSONL files (the RL task format), scored in the sandbox.

A problem's program is its prompt plus the model's completion (HumanEval style). Assert tests run
through the sandbox's trusted Python harness; ``ioCases`` (stdin/stdout) tests run in any language the
sandbox has a toolchain for. Problems in a language the sandbox lacks are skipped and counted.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codekiln.workloads.eval.config import CodeBenchmarkConfig, EvalConfig
from codekiln.workloads.eval.passk import mean_pass_at_k

# Codex's stop sequences for function-body completion
PYTHON_STOP = ["\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint("]
STOPS = {"python": PYTHON_STOP}


@dataclass(frozen=True)
class EvalProblem:
    """One problem: ``prompt`` to complete; assert ``tests`` after ``setup`` and/or stdin/stdout ``io_cases``."""

    id: str
    prompt: str
    tests: tuple[str, ...] = ()
    setup: str = ""
    language: str = "python"
    io_cases: tuple[tuple[str, str], ...] = ()
    entry_point: str | None = None


def load_problems(bench: CodeBenchmarkConfig) -> list[EvalProblem]:
    """The benchmark's problems (HumanEval from the installed wheel, or a JSONL file)."""
    if bench.source == "humaneval":
        from codekiln.workloads.sandbox.humaneval import load_problems as humaneval

        problems = [EvalProblem(p.task_id, p.prompt, (f"check({p.entry_point})",), p.test, "python", (),
                                p.entry_point) for p in humaneval()]
    else:
        problems = []
        path = Path(bench.path or "")
        if not path.is_file():
            raise ValueError(f"eval.benchmarks[{bench.label}].path: {path} does not exist")
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                io = tuple((c["stdin"], c.get("expectedStdout", c.get("expected_stdout"))) for c in
                           row.get("ioCases", row.get("io_cases", [])))
                problems.append(EvalProblem(str(row["id"]), row["prompt"], tuple(row.get("tests", [])),
                                            row.get("setup", ""), row.get("language", "python"), io))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"eval benchmark {path}:{n}: bad task line ({exc!r}); need id, prompt, tests "
                                 "or ioCases") from None
            if not problems[-1].tests and not problems[-1].io_cases:
                raise ValueError(f"eval benchmark {path}:{n}: task {problems[-1].id!r} has neither tests nor ioCases")
    return problems[: bench.limit] if bench.limit else problems


@dataclass
class BenchmarkResult:
    """pass@k of one benchmark and what it took."""

    benchmark: str
    mode: str
    n: int
    temperature: float
    seed: int
    scores: dict[str, float]
    problems: int
    skipped: Counter = field(default_factory=Counter)
    verdicts: Counter = field(default_factory=Counter)
    per_problem: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "mode": self.mode, "n": self.n, "temperature": self.temperature,
                "seed": self.seed, **self.scores, "problems": self.problems, "skipped": dict(self.skipped),
                "verdicts": dict(self.verdicts)}


def _spec(p: EvalProblem, timeout_s: float):
    from codekiln.workloads.sandbox.client import IOCase, TestSpec

    return TestSpec(tests=list(p.tests), setup=p.setup, entry_point=p.entry_point, timeout_s=timeout_s,
                    io_cases=[IOCase(i, o) for i, o in p.io_cases])


async def _score(url: str, jobs: list[tuple[str, Any, str]], concurrency: int) -> list:
    from codekiln.workloads.sandbox.client import RewardClient

    async with RewardClient(url, max_concurrency=concurrency) as client:
        return await asyncio.gather(*(client.score_code(code, spec, lang) for code, spec, lang in jobs))


def sandbox_languages(url: str) -> set[str]:
    """Languages (and aliases' canonical names) whose toolchain the sandbox at ``url`` has."""
    import urllib.request

    with urllib.request.urlopen(url.rstrip("/") + "/languages", timeout=30) as resp:
        data = json.loads(resp.read())
    items = data.get("languages", data) if isinstance(data, dict) else data
    return {x["name"] if isinstance(x, dict) else str(x) for x in items}


def run_code_benchmark(bench: CodeBenchmarkConfig, cfg: EvalConfig, generator, sandbox_url: str,
                       concurrency: int = 8, timeout_s: float = 10.0) -> BenchmarkResult:
    """Generate ``cfg.n`` completions per problem, run them in the sandbox, and estimate pass@k."""
    from codekiln.workloads.sandbox.languages import canonical

    problems = load_problems(bench)
    available = sandbox_languages(sandbox_url)
    skipped: Counter = Counter()
    runnable = []
    for p in problems:
        lang = canonical(p.language) if p.language else "python"
        if lang not in available:
            skipped[f"no_toolchain_{p.language}"] += 1
        elif p.tests and lang != "python":
            skipped[f"assert_tests_need_python_{p.language}"] += 1
        else:
            runnable.append(p)
    greedy = cfg.mode == "greedy"
    temperature = 0.0 if greedy else cfg.temperature
    samples: list[list[str]] = []
    by_lang: dict[str, list[int]] = {}
    for i, p in enumerate(runnable):
        by_lang.setdefault(p.language, []).append(i)
    samples = [[] for _ in runnable]
    for lang, idx in by_lang.items():
        outs = generator.generate([runnable[i].prompt for i in idx], n=cfg.n, temperature=temperature,
                                  top_p=cfg.top_p, max_tokens=cfg.max_tokens, seed=cfg.seed,
                                  stop=STOPS.get(lang, []))
        for i, texts in zip(idx, outs, strict=True):
            samples[i] = texts
    jobs = [(p.prompt + s, _spec(p, timeout_s), p.language) for p, ss in zip(runnable, samples, strict=True)
            for s in ss]
    results = asyncio.run(_score(sandbox_url, jobs, concurrency)) if jobs else []
    verdicts = Counter(r.verdict for r in results)
    correct, per_problem = [], []
    for i, p in enumerate(runnable):
        rs = results[i * cfg.n:(i + 1) * cfg.n]
        c = sum(r.verdict == "OK" for r in rs)
        correct.append(c)
        per_problem.append({"id": p.id, "n": cfg.n, "correct": c, "verdicts": [r.verdict for r in rs]})
    scores = mean_pass_at_k([cfg.n] * len(runnable), correct, cfg.ks) if runnable else {}
    return BenchmarkResult(bench.label, cfg.mode, cfg.n, temperature, cfg.seed, scores, len(runnable), skipped,
                           verdicts, per_problem)
