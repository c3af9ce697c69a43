"""Agentic RL settings (torch-free; ``spec.rl.agent`` of an RLRun)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from codekiln.workloads.schema import ConfigModel


class AgentConfig(ConfigModel):
    """Multi-turn tool-use rollouts on SWE-style tasks (``tasks.source: swe``).

    The per-turn sampling budget is the run's ``maxResponseTokens`` (or its stage's): a turn longer
    than that is truncated and closed; ``maxTotalTokens`` bounds the whole trajectory.
    """

    max_turns: int = Field(default=8, ge=1, le=200, description="Assistant turns per rollout at most.")
    max_total_tokens: int = Field(default=8192, ge=16, description="Whole-trajectory token budget (prompt, turns "
                                  "and observations); the rollout ends when it is spent.")
    max_observation_chars: int = Field(default=4000, ge=64, description="Observations are clipped to this many "
                                       "characters (head and tail kept).")
    system_prompt: Literal["hermes", "compact"] = Field(
        default="hermes", description="hermes: Qwen's function-calling system prompt with JSON schemas; compact: "
        "one line (tiny demo models).")
    command_timeout_s: float = Field(default=30.0, gt=0, description="Time limit of one bash command.")
    test_timeout_s: float = Field(default=60.0, gt=0, description="Time limit of one test run.")
    max_parallel_rollouts: int = Field(default=16, ge=1, description="Rollouts (sandbox sessions) in flight at once; "
                                       "at most the sandbox's live-session cap (SandboxPool sessions.maxSessions).")
    session_ttl_s: float = Field(default=900.0, gt=0, description="Session time to live (a crashed trainer's "
                                 "sessions are reaped by the server).")
    reward: Literal["resolved", "fail_to_pass_fraction"] = Field(
        default="resolved", description="resolved: 1 when every FAIL_TO_PASS and PASS_TO_PASS test passes; "
        "fail_to_pass_fraction: the passing share of FAIL_TO_PASS, 0 if a PASS_TO_PASS test breaks.")
    failed_call_penalty: float = Field(default=0.0, ge=0, description="Per-turn shaping: subtracted per failed "
                                       "tool call (0 = off).")
    error_masking: bool = Field(default=True, description="Trajectory SFT: no loss on assistant turns whose tool "
                                "call failed.")
    tree_packing: bool = Field(default=True, description="Trajectory SFT: trie-pack trajectories (shared prefixes "
                               "computed once, their gradients scaled exactly).")



class SweGenerateConfig(ConfigModel):
    """Generate SWE-style tasks into ``tasks.path`` when that file does not exist (``generate.py``)."""

    modules: list[str] = Field(
        default_factory=lambda: ["statistics", "fractions", "textwrap", "difflib"], min_length=1,
        description="Pure-Python modules of the sandbox's python3 to copy and break.")
    max_tasks: int = Field(default=8, ge=1, le=10000, description="Tasks to make at most.")
    per_module: int = Field(default=4, ge=1, description="Tasks from one module at most.")
    seed: int = Field(default=0, ge=0, description="Picks the mutations.")
    statement_detail_lines: int = Field(default=8, ge=0, description="Lines of failing-test output quoted in "
                                        "the problem statement (0: one line naming the function and the tests).")
