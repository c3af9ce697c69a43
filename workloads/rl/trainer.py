"""The RL loop: rollout → reward → advantages → update → push weights. Each trick is a module."""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from codekiln.workloads import contract
from codekiln.workloads.eval.hooks import RunEvaluator
from codekiln.workloads.model.hf import load_hf_to_continue
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.rl import dpo, rft, sharding
from codekiln.workloads.rl.advantages import compute_advantages
from codekiln.workloads.rl.checkpoint import CHECKPOINT_NAME, load_state, save_state
from codekiln.workloads.rl.config import RLConfig, RLStageConfig
from codekiln.workloads.rl.curriculum import Curriculum, PromptSampler
from codekiln.workloads.rl.dynamic_sampling import collect_informative
from codekiln.workloads.rl.engines import SamplingParams, build_engine
from codekiln.workloads.rl.kat import kat_rescale
from codekiln.workloads.rl.logprobs import response_logprobs
from codekiln.workloads.rl.metrics import StepClock, length_percentiles
from codekiln.workloads.rl.overlap import AsyncRollouts
from codekiln.workloads.rl.rewards import score_batch
from codekiln.workloads.rl.rollout import generate_groups
from codekiln.workloads.rl.tasks import Task, load_tasks
from codekiln.workloads.rl.tokenizer import build_tokenizer
from codekiln.workloads.rl.update import LossSettings, policy_update
from codekiln.workloads.rl.warmstart import sft_warm_start


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class RLTrainer:
    """Owns the policy, optimiser, engine, curriculum and sampler of one RL run."""

    def __init__(self, cfg: RLConfig, scorer, out_dir: str | Path, tasks: list[Task] | None = None,
                 agent=None) -> None:
        self.cfg, self.scorer, self.out_dir = cfg, scorer, Path(out_dir)
        torch.manual_seed(cfg.seed)
        if cfg.cpu_threads:
            torch.set_num_threads(cfg.cpu_threads)
        self.device = torch.device(
            "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
        )
        init = cfg.warm_start.init_checkpoint
        if init and not Path(init).exists():
            raise ValueError(f"warmStart.initCheckpoint {init} does not exist (run the PretrainRun that exports it, "
                             "or point it at a .pt checkpoint)")
        hf_folder = init if init and Path(init).is_dir() else None  # else a .pt state, loaded below
        self.tokenizer = build_tokenizer(cfg.tokenizer, init)
        if hf_folder:
            self.model = self._load_hf_policy(hf_folder).to(self.device)
        else:
            model_cfg = cfg.model.with_vocab(self.tokenizer.vocab_size, "spec.rl.model.vocabSize")
            self.model = Transformer(model_cfg).to(self.device)
        self.tasks = tasks if tasks is not None else load_tasks(
            cfg.tasks.source, cfg.tasks.path, cfg.tasks.builtin_set, cfg.tasks.limit, cfg.tasks.generate
        )
        self.tasks_by_id = {t.id: t for t in self.tasks}
        self.curriculum = Curriculum(
            [t.id for t in self.tasks], cfg.curriculum.pass_rate_ceiling, cfg.curriculum.min_active_prompts,
            cfg.curriculum.enabled,
        )
        self.sampler = PromptSampler(self.curriculum, cfg.seed)
        self.settings = LossSettings.from_config(cfg)
        self.step, self.history = 0, []
        self.evaluator = RunEvaluator(cfg.eval, self.out_dir, rank=_world()[0],  # spec.rl.eval benchmarks
                                      sandbox_url=getattr(scorer, "url", None),
                                      context_lengths=[self.model.cfg.max_seq_len])
        self._step_observed: dict[str, float] = {}
        self.ref_model = None
        self.dpo_ref_cache: dict = {}
        if init and not hf_folder:
            self._load_policy(init)
        o = cfg.optimizer
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay,
                                           betas=(o.beta1, o.beta2), eps=o.eps)
        self.engine = build_engine(cfg.engine, self.model, **({"config": cfg.vllm} if cfg.engine == "vllm" else {}))
        self.sharded = False  # sharding.shard_trainer: after the warm start (or a resume)
        self.clock = StepClock()
        self.overlap = AsyncRollouts(self) if cfg.rollout_staleness else None
        agent = agent if agent is not None else getattr(cfg, "agent", None)
        self.agent = None
        if agent is not None:  # agentic RL: multi-turn tool use on SWE-style tasks in sandbox sessions
            from codekiln.workloads.rl.agent.rl import AgentHooks

            self.agent = AgentHooks(self, agent, scorer.url)

    # ------------------------------------------------------------------ setup
    def _load_hf_policy(self, folder: str) -> Transformer:
        """A Hugging Face Llama folder; its shape wins, run-time knobs (kernels, attention) come from spec."""
        model = load_hf_to_continue(folder, self.cfg.model, "warmStart.initCheckpoint")
        if model.cfg.vocab_size < self.tokenizer.vocab_size:
            raise ValueError(f"warmStart.initCheckpoint {folder}: vocabulary {model.cfg.vocab_size} is smaller than "
                             f"the tokenizer's {self.tokenizer.vocab_size} (tokenizer: {self.cfg.tokenizer})")
        return model

    def _load_policy(self, path: str) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        state = state.get("policy", state)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"warmStart.initCheckpoint {path}: does not match the model config ({exc})") from None

    def warm_start(self, on_step=None) -> list[float]:
        """In-run SFT on the task format (``warmStart.sftSteps``); no-op when 0."""
        ws = self.cfg.warm_start
        if ws.sft_steps == 0:
            return []
        if self.agent is not None:  # trajectory SFT on reference trajectories
            return self.agent.warm_start(ws.sft_steps, ws.sft_lr, ws.sft_correct_fraction, self.cfg.seed, on_step)
        return sft_warm_start(
            self.model, self.tokenizer, self.tasks, steps=ws.sft_steps, lr=ws.sft_lr,
            correct_fraction=ws.sft_correct_fraction, seed=self.cfg.seed, on_step=on_step,
        )

    def finish_setup(self) -> None:
        """Snapshot the reference policy (KL, DPO) after the warm start."""
        if self.cfg.kl_coef > 0 or self.cfg.algorithm == "dpo":
            self.ref_model = copy.deepcopy(self.model).eval()
            for p in self.ref_model.parameters():
                p.requires_grad_(False)
        sharding.shard_trainer(self)
        self.engine.update_weights(sharding.policy_weights(self.model))  # replicas / vLLM get the warm-started policy
        self.evaluator.maybe(self.step, self.cfg.total_steps, self.model, self.tokenizer, sharded=self.sharded)

    # ------------------------------------------------------------------ pieces
    def stage(self, step: int | None = None) -> tuple[int, RLStageConfig]:
        step = self.step if step is None else step
        done = 0
        plan = self.cfg.stage_plan()
        for i, s in enumerate(plan):
            if step < done + s.steps:
                return i, s
            done += s.steps
        return len(plan) - 1, plan[-1]

    def sampling_params(self, stage: RLStageConfig, seed: int, abort_fn=None) -> SamplingParams:
        stops = [self.tokenizer.encode(s) for s in self.cfg.stop]
        return SamplingParams(
            max_tokens=stage.max_response_tokens, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
            stop_token_ids=[self.tokenizer.eot_id], stop_sequences=stops, seed=seed, abort_fn=abort_fn,
        )

    def generate_scored(self, task_ids: list[str], rollouts: int, stage: RLStageConfig, seed: int, stats: list):
        tasks = [self.tasks_by_id[t] for t in task_ids]
        if self.agent is not None:  # multi-turn tool use in sandbox sessions (workloads/rl/agent)
            with self.clock.time("generate"):
                return self._observe_groups(self.agent.generate_scored(tasks, rollouts, stage, seed, stats))
        abort = rft.divergence_abort(self.tokenizer.decode, tasks, rollouts, self.cfg.rft_max_divergence) \
            if self.cfg.algorithm == "rft" else None
        with self.clock.time("generate"):
            batch = generate_groups(self.engine, self.tokenizer.encode, tasks, rollouts,
                                    self.sampling_params(stage, seed, abort))
        self.clock.count("generated_tokens", sum(len(r) for r in batch.responses))
        if self.cfg.algorithm == "rft":
            batch = rft.add_reference_rollouts(self.model, self.tokenizer, batch, tasks,
                                               temperature=self.cfg.temperature, packed=self.cfg.trie_packing)
        with self.clock.time("score"):
            stats.append(score_batch(
            batch, self.tasks_by_id, self.tokenizer.decode, self.scorer,
            max_response_tokens=stage.max_response_tokens, overlong_penalty_on=self.cfg.overlong.penalty,
            buffer_tokens=self.cfg.overlong.buffer_tokens, penalty_factor=self.cfg.overlong.penalty_factor,
            format_reward=self.cfg.format_reward,
            ))
        return self._observe_groups(batch)

    def _observe_groups(self, batch):
        if self.overlap is not None and getattr(self.overlap.local, "deferred", False):
            return batch  # a prefetch thread: the main thread observes when it takes the batch
        for g in torch.unique(batch.group_ids).tolist():
            rows = batch.group_ids == g
            task_id, rate = batch.task_ids[int(rows.nonzero()[0])], float(batch.passed[rows].mean())
            self.curriculum.observe(task_id, rate)
            self._step_observed[task_id] = rate
        return batch

    def _dpo_step(self, stage: RLStageConfig, n_prompts: int, gen_stats: list) -> dict:
        """Sample and score one batch, then one DPO update (explicit inputs) and a weight push."""
        rank, world = _world()
        ids = self.sampler.next(n_prompts * world)[rank::world]
        seed = self.cfg.seed * 1_000_003 + self.step * 1009 + rank
        batch = self.generate_scored(ids, stage.rollouts_per_prompt, stage, seed, gen_stats)
        metrics = dpo.dpo_update(self.model, self.ref_model, self.optimizer, batch, self.dpo_ref_cache,
                                 beta=self.cfg.dpo_beta, grad_clip_norm=self.cfg.optimizer.grad_clip_norm,
                                 packed=self.cfg.trie_packing)
        if not metrics["skipped"]:
            self.engine.update_weights(self.model.state_dict())
        return metrics

    def _old_policy_pass(self, batch) -> None:
        """Recompute old log-probs (non-torch engines) and mean entropies (KAT μ) with the trainer."""
        need_logp = self.cfg.engine != "torch" or self.overlap is not None  # async: θ_n is the proximal policy
        if not need_logp and self.cfg.kat.entropy_mu == 0:
            return
        with torch.no_grad():
            logp, ent = response_logprobs(self.model, batch.prompts, batch.responses, self.cfg.temperature,
                                          packed=self.cfg.trie_packing)
        sharding.release(self.model)
        mask = batch.loss_mask(False)[:, : logp.shape[1]].to(ent)  # sampled tokens only (not observations)
        batch.mean_entropy = ((ent * mask).sum(-1) / mask.sum(-1).clamp(min=1)).cpu()
        if need_logp:
            batch.old_logp = logp.cpu()

    # ------------------------------------------------------------------ the loop
    def train_step(self) -> dict:
        """One optimizer step; returns its metrics."""
        t0 = time.perf_counter()
        stage_idx, stage = self.stage()
        rank, world = _world()
        per_rank = max(1, self.cfg.prompts_per_step // world)
        gen_stats: list[dict] = []
        self._step_observed = {}
        if self.cfg.algorithm == "dpo":
            metrics = self._dpo_step(stage, per_rank, gen_stats)
        else:
            counter = iter(range(10**9))

            def generate():
                ids = self.sampler.next(per_rank * world)[rank::world]
                seed = self.cfg.seed * 1_000_003 + self.step * 1009 + next(counter) * 101 + rank
                return self.generate_scored(ids, stage.rollouts_per_prompt, stage, seed, gen_stats)

            dyn = self.cfg.dynamic_sampling.enabled or self.cfg.algorithm == "dapo"
            if self.overlap is not None:  # the first batch was generated while the previous step trained
                generate = self._with_prefetched(generate, gen_stats)
            batch, n_gen = collect_informative(generate, per_rank, self.cfg.dynamic_sampling.max_num_gen_batches, dyn)
            behaviour = batch.old_logp.clone() if self.overlap is not None else None
            with self.clock.time("train"):
                self._old_policy_pass(batch)
            adv = compute_advantages(self.cfg.algorithm, batch.rewards.double(), batch.group_ids)
            if self.cfg.kat.difficulty_lambda or self.cfg.kat.entropy_mu:
                ent = batch.mean_entropy if batch.mean_entropy is not None else torch.zeros(len(batch))
                adv = kat_rescale(adv, batch.group_ids, batch.passed, ent,
                                  self.cfg.kat.difficulty_lambda, self.cfg.kat.entropy_mu)
            batch.advantages = adv.float()
            if self.overlap is not None:
                self._prefetch_next(rank, world, per_rank)
            self.engine.sleep()
            settings = dataclasses.replace(self.settings, max_response_tokens=stage.max_response_tokens)
            with self.clock.time("train"):
                for _ in range(self.cfg.ppo_epochs):
                    upd = policy_update(self.model, self.optimizer, batch, settings, self.cfg.micro_batch_rollouts,
                                        self.cfg.optimizer.grad_clip_norm or 0.0, self.ref_model, behaviour)
            with self.clock.time("sync"):
                if self.overlap is not None:
                    self.overlap.wait()  # the prefetch samples from θ_n until it is done
                self.engine.wake_up()
                self.engine.update_weights(sharding.policy_weights(self.model))
            metrics = {"loss": upd.loss, "loss_tokens": upd.loss_tokens, "grad_norm": upd.grad_norm,
                       "clip_fraction": upd.clip_fraction, "entropy": upd.entropy, "skipped": upd.skipped,
                       "gen_batches": n_gen, "trained_rollouts": len(batch), "kl": upd.kl,
                       "micro_batches": upd.micro_batches, "trained_tokens": upd.trained_tokens,
                       **length_percentiles([len(r) for r in batch.responses])}
        clock = self.clock.take()
        gen_tokens = clock.pop("generated_tokens", 0.0)
        metrics.update(clock)
        gen_s = clock["time_generate_s"]
        metrics["rollout_tokens_per_second"] = gen_tokens / gen_s if gen_s else 0.0
        metrics["trainer_tokens_per_second"] = (metrics.get("trained_tokens", 0) / clock["time_train_s"]
                                                if clock["time_train_s"] else 0.0)
        self._sync_curriculum(world)
        retired = self.curriculum.update()
        first = gen_stats[0] if gen_stats else {}  # the first generation batch: an unbiased sample of the policy
        self.step += 1
        metrics.update({
            "step": self.step, "stage": stage.name, "stage_index": stage_idx,
            **{k: first.get(k, 0.0) for k in ("reward_mean", "reward_std", "reward_min", "reward_max", "pass_rate",
                                              "response_len_mean", "truncated_fraction")},
            "active_tasks": len(self.curriculum.active()), "retired": retired,
            "step_time_s": time.perf_counter() - t0,
        })
        self.history.append(metrics)
        self.evaluator.maybe(self.step, self.cfg.total_steps, self.model, self.tokenizer, sharded=self.sharded)
        return metrics

    def _with_prefetched(self, generate, gen_stats: list):
        """``generate`` whose first call returns the batch prefetched for this step (observed here)."""
        first = self.overlap.take(self.step, gen_stats)
        if first is None:
            return generate
        self._observe_groups(first)
        pending = [first]
        return lambda: pending.pop() if pending else generate()

    def _prefetch_next(self, rank: int, world: int, per_rank: int) -> None:
        """Draw the next step's prompts now and generate + score them while this step trains."""
        nxt = self.step + 1
        if nxt >= self.cfg.total_steps:
            return
        _, stage = self.stage(nxt)
        ids = self.sampler.next(per_rank * world)[rank::world]
        seed = self.cfg.seed * 1_000_003 + nxt * 1009 + rank
        self.overlap.prefetch(nxt, ids, stage.rollouts_per_prompt, stage, seed)

    def _sync_curriculum(self, world: int) -> None:
        """Ranks score different prompts: share this step's pass rates so all curricula agree."""
        if world == 1:
            return
        gathered: list = [None] * world
        dist.all_gather_object(gathered, self._step_observed)
        for rates in gathered:
            self.curriculum.pass_rates.update(rates)

    @torch.no_grad()
    def evaluate(self, samples_per_task: int, seed: int = 12345) -> dict:
        """Sampled pass rate and mean reward over every task (not just the active ones)."""
        stage = self.cfg.stage_plan()[-1]
        stats: list[dict] = []
        saved = self.curriculum.state_dict()
        self.generate_scored([t.id for t in self.tasks], samples_per_task, stage, seed, stats)
        self.curriculum.load_state_dict(saved)  # evaluation must not move the curriculum
        return {"pass_rate": stats[0]["pass_rate"], "reward_mean": stats[0]["reward_mean"]}

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "step": self.step, "policy": sharding.model_state(self.model),
            "optimizer": sharding.optimizer_state(self.model, self.optimizer),
            "sampler": self.sampler.state_dict(), "curriculum": self.curriculum.state_dict(),
            "history": self.history, "ref_policy": sharding.model_state(self.ref_model),
            "config": self.cfg.to_wire(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        sharding.load_full_state_dict(self.model, state["policy"])
        sharding.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.curriculum.load_state_dict(state["curriculum"])
        self.history = list(state["history"])
        if state.get("ref_policy") is not None:
            if self.ref_model is None:
                self.ref_model = copy.deepcopy(self.model).eval()
            sharding.load_full_state_dict(self.ref_model, state["ref_policy"])
        sharding.shard_trainer(self)  # a resumed run skips finish_setup
        self.engine.update_weights(sharding.policy_weights(self.model))

    @property
    def checkpoint_path(self) -> Path:
        """``<outputDir>/<checkpoint.dir>/rl_state.pt`` (the whole RL state, replaced atomically)."""
        return self.out_dir / self.cfg.checkpoint.dir / CHECKPOINT_NAME

    def export(self, folder: str | Path | None = None) -> Path | None:
        """Write the policy as a Hugging Face folder (default ``<outputDir>/hf``; rank 0 writes, all ranks gather).

        GRPO/DAPO/RFT/DPO alike: the family's config.json, safetensors, tokenizer files and chat template, so
        transformers and vLLM load the trained policy unchanged.
        """
        import tempfile

        from codekiln.workloads.model.hf import char_tokenizer_json, export_hf
        from codekiln.workloads.special_tokens import SPECIAL_TOKENS

        state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in self.model.state_dict().items()}
        if _world()[0] != 0:
            return None
        folder = Path(folder) if folder is not None else self.out_dir / "hf"
        with tempfile.TemporaryDirectory() as tmp:
            tok_json = getattr(self.tokenizer, "path", None)
            if tok_json is None:  # the char tokenizer: written as a tokenizers file
                tok_json = char_tokenizer_json(self.tokenizer.itos, SPECIAL_TOKENS, Path(tmp) / "tokenizer.json")
            return export_hf(state, self.model.cfg, folder, tok_json)

    def save(self) -> Path | None:
        if _world()[0] != 0 and not self.sharded:
            return None
        state = self.state_dict()  # sharded: every rank joins the gathers, rank 0 writes
        return save_state(self.checkpoint_path, state) if _world()[0] == 0 else None

    def try_resume(self) -> bool:
        if not self.cfg.checkpoint.resume:
            return False
        state = load_state(self.checkpoint_path)
        if state is None:
            return False
        self.load_state_dict(state)
        return True


def sandbox_url_from_env(cfg: RLConfig) -> str | None:
    return cfg.sandbox_url or os.environ.get(contract.ENV_SANDBOX_URL)
