"""Multi-turn tool-use rollouts: the policy acts in sandbox sessions until it submits or runs out.

Rollouts advance in lock-step turns: one batched ``engine.generate`` call samples the next
assistant turn of every live rollout (torch or vLLM engine, ``<|im_end|>`` stops a turn), then
every rollout's tool calls run concurrently in its own session (asyncio). Each rollout owns one
session, opened at its start and closed at its end (also on errors); at most
``agent.maxParallelRollouts`` are in flight, the rest wait for the next wave.

Token bookkeeping: a trajectory is one token sequence (system, user, then assistant turns and
observations). Sampled assistant tokens carry loss and their sampling log-probs; everything the
environment inserted (observations, chat headers, a closing ``<|im_end|>`` after a truncated
turn) is context only (``trained = False``). At the end the task's tests decide the reward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from codekiln.workloads.rl.agent.chat import ChatTokenizer
from codekiln.workloads.rl.agent.config import AgentConfig
from codekiln.workloads.rl.agent.protocol import parse_tool_calls, render_observation, system_prompt
from codekiln.workloads.rl.agent.tasks import SweTask
from codekiln.workloads.rl.agent.tools import Observation, ToolExecutor, run_test_ids
from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.engines.base import SamplingParams


@dataclass
class Trajectory:
    """One rollout: tokens with loss mask and log-probs, the chat messages, and the outcome."""

    task_id: str
    group: int
    tokens: list[int] = field(default_factory=list)
    trained: list[bool] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    prompt_len: int = 0
    turns: int = 0
    failed_calls: int = 0
    finish: str = ""  # submit | max_turns | token_budget | aborted
    resolved: bool = False
    fail_to_pass_fraction: float = 0.0
    reward: float = 0.0
    test_results: dict[str, bool] = field(default_factory=dict)

    def extend(self, ids: list[int], trained: bool, logprobs: list[float] | None = None) -> None:
        self.tokens += ids
        self.trained += [trained] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)

    @property
    def truncated(self) -> bool:
        return self.finish == "token_budget"

    def to_record(self) -> dict:
        """JSON form for trajectory datasets (``{"messages": ...}`` is what SFT reads)."""
        return {"task_id": self.task_id, "messages": self.messages, "resolved": self.resolved, "reward": self.reward,
                "turns": self.turns, "finish": self.finish, "failed_calls": self.failed_calls}


def initial_messages(task: SweTask, style: str) -> list[dict]:
    """System + user messages of a task."""
    return [{"role": "system", "content": system_prompt(style)},
            {"role": "user", "content": task.problem_statement}]


def start_trajectory(task: SweTask, group: int, ct: ChatTokenizer, style: str) -> Trajectory:
    traj = Trajectory(task.instance_id, group, messages=initial_messages(task, style))
    for m in traj.messages:
        traj.extend(ct.header(m["role"]) + ct.encode(m["content"]) + [ct.im_end] + ct.newline, False)
    traj.extend(ct.header("assistant"), False)
    traj.prompt_len = len(traj.tokens)
    return traj


def append_observations(traj: Trajectory, ct: ChatTokenizer, observations: list[Observation], budget: int) -> bool:
    """Append tool messages; one that would overrun ``budget`` tokens is cut to fit (returns False then)."""
    for obs in observations:
        content = render_observation(obs.content)
        header, body, tail = ct.header("tool"), ct.encode(content), [ct.im_end, *ct.newline]
        room = budget - len(traj.tokens) - len(header) - len(tail)
        if room < len(body):
            if room >= 0:  # cut the observation to fit; without room for its header it is left out
                traj.messages.append({"role": "tool", "content": ct.decode(body[:room])})
                traj.extend(header + body[:room] + tail, False)
            return False
        traj.messages.append({"role": "tool", "content": content})
        traj.extend(header + body + tail, False)
    return True


async def score_session(session, task: SweTask, snapshot: dict[str, bytes], cfg: AgentConfig) -> tuple[bool, float,
                                                                                                        dict]:
    """Restore the task's test files, run FAIL_TO_PASS + PASS_TO_PASS; (resolved, F2P fraction, results)."""
    for path in task.test_files:
        if path in snapshot:
            await session.write_file(path, snapshot[path].decode("utf-8"))
    report = await run_test_ids(session, task.tests, cfg.test_timeout_s)
    f2p = sum(report.passed(t) for t in task.fail_to_pass) / len(task.fail_to_pass)
    p2p = all(report.passed(t) for t in task.pass_to_pass)
    return (f2p == 1.0 and p2p), (f2p if p2p else 0.0), dict(report.results)


class AgentRunner:
    """Runs multi-turn rollouts for an engine against a sandbox session pool.

    Args:
        engine: a rollout engine (``generate(prompts, SamplingParams)``).
        tokenizer: the policy's tokenizer (char, tokenizer.json, or ``tokenizers.Tokenizer``).
        sessions: an async session opener (``await sessions.open(task, snapshot)`` -> session).
        cfg: the agent settings.
    """

    def __init__(self, engine, tokenizer, sessions, cfg: AgentConfig) -> None:
        self.engine, self.sessions, self.cfg = engine, sessions, cfg
        self.ct = tokenizer if isinstance(tokenizer, ChatTokenizer) else ChatTokenizer(tokenizer)
        self._snapshots: dict[str, dict[str, bytes]] = {}

    def snapshot(self, task: SweTask) -> dict[str, bytes]:
        if task.instance_id not in self._snapshots:
            self._snapshots[task.instance_id] = task.snapshot()
        return self._snapshots[task.instance_id]

    # ------------------------------------------------------------------ one wave of rollouts
    async def _wave(self, tasks: list[SweTask], groups: list[int], *, max_turn_tokens: int, temperature: float,
                    top_p: float, seed: int | None, abort_fn: Callable | None) -> list[Trajectory]:
        cfg, ct = self.cfg, self.ct
        trajs = [start_trajectory(t, g, ct, cfg.system_prompt) for t, g in zip(tasks, groups, strict=True)]
        sessions = [None] * len(tasks)

        async def open_one(i: int) -> None:
            sessions[i] = await self.sessions.open(tasks[i], self.snapshot(tasks[i]))

        try:
            await asyncio.gather(*(open_one(i) for i in range(len(tasks))))
            executors = [ToolExecutor(s, t.tests, command_timeout_s=cfg.command_timeout_s,
                                      test_timeout_s=cfg.test_timeout_s,
                                      max_observation_chars=cfg.max_observation_chars)
                         for s, t in zip(sessions, tasks, strict=True)]
            for turn in range(cfg.max_turns):
                live = [i for i, t in enumerate(trajs) if not t.finish]
                closing = 1 + len(ct.newline)  # <|im_end|> and newline after a truncated turn
                budgets = {i: min(max_turn_tokens, cfg.max_total_tokens - len(trajs[i].tokens) - closing) for i in live}
                for i in [i for i in live if budgets[i] < 1]:
                    trajs[i].finish = "token_budget"
                live = [i for i in live if budgets[i] >= 1]
                if not live:
                    break
                outs = self._generate(trajs, live, budgets, turn, temperature, top_p, seed, abort_fn)
                pending = []
                for i, out in zip(live, outs, strict=True):
                    traj = trajs[i]
                    traj.turns += 1
                    traj.extend(list(out.token_ids), True, list(out.logprobs))
                    if not out.token_ids or out.token_ids[-1] != ct.im_end:
                        traj.extend([ct.im_end], False)  # per-turn truncation: close the turn as context
                    traj.extend(ct.newline, False)
                    text = ct.decode(out.token_ids)
                    traj.messages.append({"role": "assistant", "content": text})
                    if out.finish_reason == "aborted" and len(out.token_ids) < budgets[i]:
                        traj.finish = "aborted"  # RFT: strayed from the reference
                        continue
                    pending.append((i, parse_tool_calls(text)))

                async def act(i: int, calls) -> tuple[int, list[Observation]]:
                    obs = []
                    for call in calls:
                        obs.append(await executors[i].execute(call))
                        if obs[-1].done:
                            break
                    return i, obs

                for i, obs in await asyncio.gather(*(act(i, calls) for i, calls in pending)):
                    traj = trajs[i]
                    failed = sum(o.failed for o in obs)
                    traj.failed_calls += failed
                    if failed:
                        traj.messages[-1]["failed"] = True
                    if any(o.done for o in obs):
                        traj.finish = "submit"
                        continue
                    fits = append_observations(traj, ct, obs, cfg.max_total_tokens)
                    if not fits or len(traj.tokens) + len(ct.header("assistant")) >= cfg.max_total_tokens:
                        traj.finish = "token_budget"
                    else:
                        traj.extend(ct.header("assistant"), False)
            for t in trajs:
                if not t.finish:
                    t.finish = "max_turns"
                    if t.tokens[-len(ct.header("assistant")):] == ct.header("assistant") and not t.trained[-1]:
                        del t.tokens[-len(ct.header("assistant")):], t.trained[-len(ct.header("assistant")):]
                        del t.logprobs[-len(ct.header("assistant")):]

            async def score(i: int) -> None:
                traj = trajs[i]
                if traj.finish == "aborted":
                    return
                traj.resolved, traj.fail_to_pass_fraction, traj.test_results = await score_session(
                    sessions[i], tasks[i], self.snapshot(tasks[i]), cfg)

            await asyncio.gather(*(score(i) for i in range(len(trajs))))
        finally:
            await asyncio.gather(*(s.close() for s in sessions if s is not None), return_exceptions=True)
        for t in trajs:
            base = float(t.resolved) if cfg.reward == "resolved" else t.fail_to_pass_fraction
            t.reward = base - cfg.failed_call_penalty * t.failed_calls
        return trajs

    def _generate(self, trajs, live, budgets, turn, temperature, top_p, seed, abort_fn):
        budget_of = [budgets[i] for i in live]

        def abort(row: int, token_ids: list[int]) -> bool:
            if len(token_ids) >= budget_of[row]:
                return True
            return abort_fn is not None and abort_fn(trajs[live[row]], turn, token_ids)

        params = SamplingParams(
            max_tokens=max(budget_of), temperature=temperature, top_p=top_p,
            stop_token_ids=[self.ct.im_end, self.ct.eot_id], seed=None if seed is None else seed + 7919 * turn,
            abort_fn=abort,
        )
        if hasattr(self.engine, "bind"):  # a scripted policy (reference trajectories) needs to know the rows
            self.engine.bind([trajs[i] for i in live], turn)
        return self.engine.generate([trajs[i].tokens for i in live], params)

    # ------------------------------------------------------------------ public
    async def run_async(self, tasks: list[SweTask], rollouts_per_task: int, *, max_turn_tokens: int = 512,
                        temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                        abort_fn: Callable | None = None) -> list[Trajectory]:
        """``rollouts_per_task`` trajectories per task (group i = tasks[i]), in waves of at most
        ``maxParallelRollouts`` concurrent sessions; a turn samples at most ``max_turn_tokens``.

        ``abort_fn(trajectory, turn, token_ids) -> bool`` may stop a rollout mid-turn (RFT drift).
        """
        rows = [(t, g) for g, t in enumerate(tasks) for _ in range(rollouts_per_task)]
        out: list[Trajectory] = []
        step = self.cfg.max_parallel_rollouts
        for w, start in enumerate(range(0, len(rows), step)):
            chunk = rows[start: start + step]
            out += await self._wave([t for t, _ in chunk], [g for _, g in chunk], max_turn_tokens=max_turn_tokens,
                                    temperature=temperature, top_p=top_p,
                                    seed=None if seed is None else seed + 104729 * w, abort_fn=abort_fn)
        return out

    def run(self, tasks: list[SweTask], rollouts_per_task: int, **kwargs) -> list[Trajectory]:
        """Synchronous wrapper around :meth:`run_async` (opens and closes the session client)."""

        async def main():
            async with self.sessions:
                return await self.run_async(tasks, rollouts_per_task, **kwargs)

        return asyncio.run(main())


def to_batch(trajs: list[Trajectory]) -> RolloutBatch:
    """Trajectories → the RL batch: prompt = system + user (+ the first assistant header); response =
    everything after it, with ``token_mask`` False on observation tokens."""
    responses = [t.tokens[t.prompt_len:] for t in trajs]
    width = max((len(r) for r in responses), default=0)
    old = torch.zeros(len(trajs), width)
    mask = torch.zeros(len(trajs), width, dtype=torch.bool)
    for i, t in enumerate(trajs):
        n = len(responses[i])
        old[i, :n] = torch.tensor(t.logprobs[t.prompt_len:])
        mask[i, :n] = torch.tensor(t.trained[t.prompt_len:], dtype=torch.bool)
    return RolloutBatch(
        prompts=[t.tokens[: t.prompt_len] for t in trajs], responses=responses, old_logp=old,
        group_ids=torch.tensor([t.group for t in trajs], dtype=torch.long), task_ids=[t.task_id for t in trajs],
        truncated=torch.tensor([t.truncated for t in trajs]), rewards=torch.tensor([t.reward for t in trajs]),
        passed=torch.tensor([float(t.resolved) for t in trajs]), token_mask=mask,
    )
