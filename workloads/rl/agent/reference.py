"""Reference trajectories: a task's reference tool calls played through the real tool loop.

:class:`ScriptedEngine` stands in for the policy and emits each task's reference turns (a short
plan, then the call in Hermes form); observations come from the real sandbox session, so a
reference trajectory is exactly what a policy that made these calls would have seen. They warm-start
the policy (trajectory SFT), join RFT groups as the reference rollout, and are SFT data.
"""

from __future__ import annotations

from codekiln.workloads.rl.agent.protocol import ToolCall
from codekiln.workloads.rl.agent.tasks import SweTask
from codekiln.workloads.rl.engines.base import Completion, SamplingParams

PLANS = {
    "str_replace": "Fix {path}.", "write_file": "Write {path}.", "read_file": "Read {path}.",
    "bash": "Run a command.", "run_tests": "Run the tests.", "submit": "Submit.",
}


def reference_turns(task: SweTask) -> list[str]:
    """The assistant message text of each reference turn (plan line + tool call)."""
    if not task.reference_calls:
        raise ValueError(f"task {task.instance_id}: no reference_calls (needed for reference trajectories)")
    turns = []
    for call in task.reference_calls:
        args = dict(call.get("arguments", {}))
        plan = PLANS.get(call["name"], "Next step.").format(path=args.get("path", ""))
        turns.append(f"{plan}\n{ToolCall(call['name'], args).render()}")
    return turns


def lazy_turns(task: SweTask) -> list[str]:
    """A distractor: submit without changing anything (fails the task's tests)."""
    return [f"{PLANS['submit']}\n{ToolCall('submit', {}).render()}"]


class TextEngine:
    """Base of the rollout engines whose policy is text, not trainable weights (scripted turns, a served
    model): :meth:`bind` hands them the live rollouts; weight updates and memory release are no-ops."""

    _rows: list
    _turn: int

    def bind(self, rows, turn: int) -> None:
        """The live rollouts (and the turn number) the next :meth:`generate` answers, in prompt order."""
        self._rows, self._turn = rows, turn

    def update_weights(self, state_dict) -> None:
        return None

    def sleep(self) -> None:
        return None

    def wake_up(self) -> None:
        return None


class ScriptedEngine(TextEngine):
    """A rollout engine that plays fixed turns: ``scripts[task_id]`` lists the assistant texts."""

    def __init__(self, tokenizer, scripts: dict[str, list[str]]) -> None:
        from codekiln.workloads.rl.agent.chat import ChatTokenizer

        self.ct = tokenizer if isinstance(tokenizer, ChatTokenizer) else ChatTokenizer(tokenizer)
        self.scripts = scripts
        self._rows: list = []
        self._turn = 0

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        out = []
        for traj in self._rows:
            script = self.scripts[traj.task_id]
            text = script[min(self._turn, len(script) - 1)]
            ids = self.ct.encode(text) + [self.ct.im_end]
            out.append(Completion(ids, [0.0] * len(ids), "stop"))
        return out


def play_scripts(runner_cls, tokenizer, sessions, cfg, tasks: list[SweTask], scripts: dict[str, list[str]]):
    """Play ``scripts`` through an :class:`AgentRunner` built on a :class:`ScriptedEngine`; returns trajectories."""
    runner = runner_cls(ScriptedEngine(tokenizer, scripts), tokenizer, sessions, cfg)
    return runner.run(tasks, 1)
