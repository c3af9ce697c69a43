"""Rewards from sandboxed execution, with format and overlong shaping and per-step statistics.

The program sent to the sandbox is the task's prompt followed by the completion
(the prompt is code the completion continues); its unit tests run through the
sandbox reward client. Scores are cached per (task, program) within a run: the
tests are deterministic and small policies repeat themselves a lot.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import torch

from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.overlong import overlong_penalty
from codekiln.workloads.rl.tasks import Task


@dataclass
class Score:
    """Outcome of one program: fraction of tests passed and whether all passed."""

    pass_fraction: float
    passed: bool


class SandboxScorer:
    """Scores programs with the sandbox reward client (bounded concurrency, transport retries in the client)."""

    def __init__(self, url: str, timeout_s: float = 10.0, concurrency: int = 8) -> None:
        self.url, self.timeout_s, self.concurrency = url, timeout_s, concurrency
        self.cache: dict[tuple[str, str], Score] = {}
        self.executions = 0

    async def _score_all(self, programs: list[str], tasks: list[Task]) -> list:
        from codekiln.workloads.sandbox.client import RewardClient, TestSpec

        async with RewardClient(self.url, max_concurrency=self.concurrency) as client:
            return await asyncio.gather(*(
                client.score_code(prog, TestSpec(setup=t.setup, tests=list(t.tests), timeout_s=self.timeout_s),
                                  t.language)
                for prog, t in zip(programs, tasks, strict=True)
            ))

    def score(self, tasks: list[Task], programs: list[str]) -> list[Score]:
        keys = [(t.id, p) for t, p in zip(tasks, programs, strict=True)]
        todo = list(dict.fromkeys(k for k in keys if k not in self.cache))
        by_id = {t.id: t for t in tasks}
        if todo:
            results = asyncio.run(self._score_all([prog for _, prog in todo], [by_id[tid] for tid, _ in todo]))
            self.executions += len(todo)
            for key, res in zip(todo, results, strict=True):
                self.cache[key] = Score(pass_fraction=float(res.pass_fraction), passed=res.passed == res.total)
        return [self.cache[k] for k in keys]


def well_formed(completion: str) -> bool:
    """Format hook for the built-in tasks: an indented body line that returns something."""
    lines = [ln for ln in completion.splitlines() if ln.strip()]
    return bool(lines) and lines[0].startswith("    return ")


def score_batch(
    batch: RolloutBatch, tasks_by_id: dict[str, Task], decode, scorer, *, max_response_tokens: int,
    overlong_penalty_on: bool = False, buffer_tokens: int = 4096, penalty_factor: float = 1.0,
    format_reward: float = 0.0,
) -> dict[str, float]:
    """Fill ``batch.rewards`` and ``batch.passed``; return reward statistics of the batch.

    reward = pass fraction (+ ``format_reward`` if well-formed) (+ overlong soft penalty).
    """
    tasks = [tasks_by_id[t] for t in batch.task_ids]
    completions = [decode(r) for r in batch.responses]
    scores = scorer.score(tasks, [t.prompt + c for t, c in zip(tasks, completions, strict=True)])
    rewards = []
    for resp, comp, s in zip(batch.responses, completions, scores, strict=True):
        r = s.pass_fraction
        if format_reward and well_formed(comp):
            r += format_reward
        if overlong_penalty_on:
            r += overlong_penalty(len(resp), max_response_tokens, min(buffer_tokens, max_response_tokens),
                                  penalty_factor)
        rewards.append(r)
    batch.rewards = torch.tensor(rewards, dtype=torch.float32)
    batch.passed = torch.tensor([float(s.passed) for s in scores])
    lengths = torch.tensor([len(r) for r in batch.responses], dtype=torch.float32)
    return {
        "reward_mean": float(batch.rewards.mean()), "reward_std": float(batch.rewards.std()) if len(batch) > 1 else 0.0,
        "reward_min": float(batch.rewards.min()), "reward_max": float(batch.rewards.max()),
        "pass_rate": float(batch.passed.mean()), "response_len_mean": float(lengths.mean()),
        "truncated_fraction": float(batch.truncated.float().mean()),
    }
