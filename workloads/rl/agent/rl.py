"""Agentic RL inside the RL trainer: rollouts, rewards, RFT references and the warm start.

``RLTrainer`` delegates to :class:`AgentHooks` when ``spec.rl.agent`` is set; everything after
the rollout is the trainer's usual path on the one batch type: GRPO / Dr.GRPO / DAPO advantages,
KAT difficulty/entropy rescaling (entropies over sampled tokens only), dynamic sampling,
curriculum, and the trie-packed update (trajectories of a group share their prompt and often
their first turns, so the prefix tree shares them). Observation tokens carry no loss
(``RolloutBatch.token_mask``).

RFT with reference trajectories (KAT-Dev publishes no exact rules; our assumptions):
* each task's reference trajectory (its ``reference_calls`` played through the real tool loop,
  :mod:`reference`) joins its group as one extra rollout with its real reward, so group-relative
  advantages measure rollouts against the reference;
* a rollout is stopped early once the text of its current turn strays from the reference's turn
  of the same index by more than ``rftMaxDivergence`` (normalised edit distance to the same-length
  prefix, after 4 characters); a stopped rollout gets reward 0.
"""

from __future__ import annotations

import random

import torch

from codekiln.workloads.rl.agent.config import AgentConfig
from codekiln.workloads.rl.agent.reference import lazy_turns, play_scripts, reference_turns
from codekiln.workloads.rl.agent.rollout import AgentRunner, Trajectory, to_batch
from codekiln.workloads.rl.agent.sessions import SandboxSessions
from codekiln.workloads.rl.agent.sft import trajectory_sft
from codekiln.workloads.rl.agent.tasks import SweTask
from codekiln.workloads.rl.batch import RolloutBatch
from codekiln.workloads.rl.logprobs import response_logprobs
from codekiln.workloads.rl.rft import MIN_CHARS, divergence


def batch_stats(trajs: list[Trajectory]) -> dict[str, float]:
    """The per-step statistics ``score_batch`` reports, for trajectories (lengths in sampled tokens)."""
    r = torch.tensor([t.reward for t in trajs], dtype=torch.float32)
    return {
        "reward_mean": float(r.mean()), "reward_std": float(r.std()) if len(r) > 1 else 0.0,
        "reward_min": float(r.min()), "reward_max": float(r.max()),
        "pass_rate": sum(t.resolved for t in trajs) / len(trajs),
        "response_len_mean": sum(sum(t.trained) for t in trajs) / len(trajs),
        "truncated_fraction": sum(t.truncated for t in trajs) / len(trajs),
        "turns_mean": sum(t.turns for t in trajs) / len(trajs),
        "failed_calls_mean": sum(t.failed_calls for t in trajs) / len(trajs),
        "submitted_fraction": sum(t.finish == "submit" for t in trajs) / len(trajs),
    }


class AgentHooks:
    """The agentic parts of one RL run.

    Args:
        trainer: the ``RLTrainer`` (its model, engine, tokenizer and config are used).
        cfg: the agent settings.
        sandbox_url: the sandbox server holding the sessions.
    """

    def __init__(self, trainer, cfg: AgentConfig, sandbox_url: str) -> None:
        self.trainer, self.cfg = trainer, cfg
        self.sessions = SandboxSessions(sandbox_url, ttl_s=cfg.session_ttl_s)
        self.runner = AgentRunner(trainer.engine, trainer.tokenizer, self.sessions, cfg)
        self.references: dict[str, Trajectory] = {}
        self.last_trajectories: list[Trajectory] = []
        max_seq = trainer.model.cfg.max_seq_len
        if cfg.max_total_tokens > max_seq:
            raise ValueError(f"agent.maxTotalTokens ({cfg.max_total_tokens}) exceeds the model's maxSeqLen ({max_seq})")

    # ------------------------------------------------------------------ references
    def reference_trajectories(self, tasks: list[SweTask]) -> dict[str, Trajectory]:
        """Each task's reference trajectory (played once, cached); a reference that does not resolve
        its task is an error naming the task."""
        todo = [t for t in tasks if t.instance_id not in self.references]
        if todo:
            scripts = {t.instance_id: reference_turns(t) for t in todo}
            for traj in play_scripts(AgentRunner, self.trainer.tokenizer, self.sessions, self.cfg, todo, scripts):
                if not traj.resolved:
                    raise ValueError(f"task {traj.task_id}: its reference_calls do not resolve it "
                                     f"(tests: {traj.test_results})")
                self.references[traj.task_id] = traj
        return {t.instance_id: self.references[t.instance_id] for t in tasks}

    def warm_start(self, steps: int, lr: float, correct_fraction: float, seed: int, on_step=None) -> list[float]:
        """Trajectory SFT on reference trajectories (share ``correct_fraction``) and lazy ones
        (submit without a fix: the rest), so the policy knows the protocol but not every answer."""
        tasks = list(self.trainer.tasks)
        refs = self.reference_trajectories(tasks)
        lazy = {t.task_id: t for t in play_scripts(
            AgentRunner, self.trainer.tokenizer, self.sessions, self.cfg, tasks,
            {t.instance_id: lazy_turns(t) for t in tasks})}
        rng = random.Random(seed)
        chats = [(refs if rng.random() < correct_fraction else lazy)[t.instance_id].messages
                 for t in tasks for _ in range(8)]
        return trajectory_sft(
            self.trainer.model, self.trainer.tokenizer, chats, steps=steps, lr=lr, tree=self.cfg.tree_packing,
            error_masking=self.cfg.error_masking, max_tokens=self.trainer.model.cfg.max_seq_len, seed=seed,
            on_step=on_step)

    # ------------------------------------------------------------------ rollouts
    def _drift_abort(self, tasks: list[SweTask]):
        refs = self.reference_trajectories(tasks)
        ref_turns = {tid: [m["content"] for m in r.messages if m["role"] == "assistant"] for tid, r in refs.items()}
        limit = self.trainer.cfg.rft_max_divergence
        decode = self.runner.ct.decode

        def abort(traj: Trajectory, turn: int, token_ids: list[int]) -> bool:
            turns = ref_turns[traj.task_id]
            if turn >= len(turns):
                return False
            text = decode(token_ids)
            return len(text) >= MIN_CHARS and divergence(text, turns[turn]) > limit

        return abort

    def _add_references(self, batch: RolloutBatch, tasks: list[SweTask]) -> RolloutBatch:
        refs = self.reference_trajectories(tasks)
        ref_trajs = []
        for g, task in enumerate(tasks):
            r = refs[task.instance_id]
            ref_trajs.append(Trajectory(**{**r.__dict__, "group": g}))
        ref = to_batch(ref_trajs)
        with torch.no_grad():
            logp, _ = response_logprobs(self.trainer.model, ref.prompts, ref.responses, self.trainer.cfg.temperature,
                                        packed=self.trainer.cfg.trie_packing)
        ref.old_logp = (logp.float().cpu() * ref.token_mask[:, : logp.shape[1]]).contiguous()
        merged = RolloutBatch.concat([batch, ref])
        merged.group_ids[len(batch):] = ref.group_ids  # concat renumbers groups: put each reference back
        return merged

    def generate_scored(self, tasks: list[SweTask], rollouts: int, stage, seed: int, stats: list) -> RolloutBatch:
        """Run ``rollouts`` trajectories per task, reward them with the task's tests; fill ``stats``."""
        cfg = self.trainer.cfg
        rft = cfg.algorithm == "rft"
        trajs = self.runner.run(
            tasks, rollouts, max_turn_tokens=stage.max_response_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
            seed=seed, abort_fn=self._drift_abort(tasks) if rft else None)
        self.last_trajectories = trajs
        stats.append(batch_stats(trajs))
        batch = to_batch(trajs)
        return self._add_references(batch, tasks) if rft else batch
