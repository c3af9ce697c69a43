"""The training loop: stages -> steps -> micro-batches; checkpoints, eval, export.

Reads top to bottom; data, engine, schedule, checkpoints and metrics are components.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from codekiln.workloads.data.packed import PackedReader, PackedSequence
from codekiln.workloads.eval.hooks import RunEvaluator
from codekiln.workloads.model.hf import export_hf, load_hf_to_continue
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.special_tokens import EOT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, PAD, SPECIAL_TOKENS
from codekiln.workloads.train import checkpoint as ckpt
from codekiln.workloads.train.config import TrainConfig, TrainStageConfig
from codekiln.workloads.train.data import (
    IGNORE_INDEX,
    FimTokens,
    PackedSamples,
    Sampler,
    collate,
    fim_transform,
    unigram_logprobs,
)
from codekiln.workloads.train.engine import DistEnv, build_engine
from codekiln.workloads.train.loss import LossModule, global_loss_tokens
from codekiln.workloads.train.metrics import Metrics, device_peak_tflops, flops_per_token
from codekiln.workloads.train.schedule import stage_lr


class PretrainSource:
    """Packed samples of one stage with FIM applied per (seed, epoch, index)."""

    def __init__(self, reader: PackedReader, stage: TrainStageConfig, eval_sequences: int, seed: int,
                 fim: FimTokens, pad_id: int) -> None:
        self.samples = PackedSamples(reader, stage.seq_len, eval_sequences)
        self.stage, self.seed, self.fim, self.pad_id = stage, seed, fim, pad_id

    def __len__(self) -> int:
        return len(self.samples)

    def get(self, epoch: int, index: int) -> tuple[PackedSequence, np.ndarray]:
        """The sample and its loss mask (padding is never a target)."""
        sample = self.samples[index]
        if self.stage.fim_rate > 0:
            rng = np.random.default_rng([self.seed, epoch, index])
            sample = fim_transform(sample, rng, self.stage.fim_rate, self.stage.fim_mode, self.fim)
        return sample, sample.tokens != self.pad_id


@dataclass
class TrainState:
    global_step: int = 0
    stage_index: int = 0
    stage_step: int = 0
    tokens: int = 0
    sampler: dict | None = None
    history: list[dict] = field(default_factory=list)  # per-step loss (rank 0 view)


def tokenizer_path(cfg: TrainConfig) -> Path | None:
    if cfg.data.tokenizer:
        return Path(cfg.data.tokenizer)
    candidate = Path(cfg.data.path) / "tokenizer.json"
    return candidate if candidate.exists() else None


def tokenizer_vocab_size(tok_path: Path | None) -> int | None:
    """The vocabulary size of a tokenizer.json, special tokens included (None without one)."""
    if tok_path is None:
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tok_path)).get_vocab_size(with_added_tokens=True)


def _special_ids(tok_path: Path | None) -> dict[str, int]:
    """Ids of the special tokens: the tokenizer's own (those it lacks are absent, never a made-up id that is a
    real token of it), or their default positions when there is no tokenizer file."""
    if tok_path is None:
        return {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    return {t: i for t in SPECIAL_TOKENS if (i := tok.token_to_id(t)) is not None}


def stage_steps(cfg: TrainConfig, stage: TrainStageConfig, world_size: int) -> int:
    if stage.steps is not None:
        return stage.steps
    per_step = cfg.micro_batch_size * cfg.grad_accum_steps * world_size * stage.seq_len
    return max(1, math.ceil(stage.tokens / per_step))


class Trainer:
    """One process's part of a run. ``run()`` trains all stages and returns a summary."""

    def __init__(self, cfg: TrainConfig, env: DistEnv) -> None:
        self.cfg, self.env = cfg, env
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / cfg.checkpoint.dir
        self.tok_path = tokenizer_path(cfg)
        self.special = _special_ids(self.tok_path)
        self.pad_id = self.special.get(PAD, -1)  # no <|pad|>: no token is padding
        self.reader = PackedReader(cfg.data.path) if cfg.objective == "pretrain" else None
        torch.manual_seed(cfg.seed)
        self.model = load_hf_to_continue(cfg.init_from, cfg.model, "initFrom") if cfg.init_from else \
            Transformer(cfg.model.with_vocab(tokenizer_vocab_size(self.tok_path), "spec.training.model.vocabSize"))
        self._base_rope = (self.model.cfg.rope_theta, self.model.cfg.rope_scaling)  # initFrom: the folder's
        self.engine = build_engine(LossModule(self.model), cfg, env)
        self.steps = [stage_steps(cfg, s, env.world_size) for s in cfg.stages]
        self.metrics = Metrics(self.out, env.rank == 0, sum(self.steps))
        self.evaluator = RunEvaluator(cfg.eval, self.out, rank=env.rank,  # benchmarks in training (spec eval)
                                      context_lengths=[s.seq_len for s in cfg.stages],
                                      sharded=cfg.backend == "deepspeed" and cfg.zero_stage == 3)
        self.state = TrainState()
        self._unigram: np.ndarray | None = None

    # ------------------------------------------------------------------ data
    def source(self, index: int):
        stage = self.cfg.stages[index]
        if self.cfg.objective == "sft":
            from tokenizers import Tokenizer

            from codekiln.workloads.train.sft import SftSource

            if self.tok_path is None:
                raise ValueError("data.tokenizer: SFT needs a tokenizer.json")
            return SftSource(self.cfg.data.path, Tokenizer.from_file(str(self.tok_path)), stage.seq_len)
        s = self.special
        needed = [EOT, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE] if stage.fim_rate else []
        if missing := [t for t in needed if t not in s]:
            raise ValueError(f"stages[{index}].fimRate: the tokenizer ({self.tok_path}) has no {', '.join(missing)}")
        fim = FimTokens(*(s.get(t, -1) for t in (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, EOT)))
        return PretrainSource(self.reader, stage, self.cfg.data.eval_sequences, self.cfg.seed + index, fim,
                              self.pad_id)

    def micro_batches(self, source, sampler: Sampler) -> list[dict[str, torch.Tensor]]:
        """This rank's micro-batches of the next global batch (same global order for any world size)."""
        cfg, env = self.cfg, self.env
        picks = sampler.take(cfg.micro_batch_size * cfg.grad_accum_steps * env.world_size)
        batches = []
        for a in range(cfg.grad_accum_steps):
            lo = (a * env.world_size + env.rank) * cfg.micro_batch_size
            items = [source.get(e, i) for e, i in picks[lo : lo + cfg.micro_batch_size]]
            seqs, masks = zip(*items, strict=True)
            batch = collate(list(seqs), None if masks[0] is None else list(masks))
            if int(batch["input_ids"].max()) >= self.model.cfg.vocab_size:
                field = f"initFrom {self.cfg.init_from}: the model's vocabulary" if self.cfg.init_from else \
                    "model.vocabSize"
                raise ValueError(
                    f"{field} ({self.model.cfg.vocab_size}) is smaller than the data's token ids "
                    f"(max {int(batch['input_ids'].max())}); set it to the tokenizer's vocabulary size"
                )
            batches.append({k: v.to(env.device) for k, v in batch.items()})
        return batches

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        self.state.sampler = self._sampler.state_dict()
        st = self.state
        trainer_state = {k: getattr(st, k) for k in ("global_step", "stage_index", "stage_step", "tokens", "sampler")}
        path = ckpt.save_checkpoint(self.ckpt_dir, st.global_step, self.engine.save, trainer_state,
                                    self.env.rank, self.cfg.checkpoint.keep_last)
        self.metrics.message(f"checkpoint {path}", st.global_step, self.cfg.stages[st.stage_index].name)

    def maybe_resume(self) -> bool:
        folder = ckpt.latest_checkpoint(self.ckpt_dir) if self.cfg.checkpoint.resume else None
        if folder is None:
            return False
        self.engine.load(folder)
        saved = ckpt.read_trainer_state(folder)
        self.state = TrainState(**saved)
        self.metrics.message(f"resumed from {folder}", self.state.global_step, "resume")
        return True

    # ------------------------------------------------------------------ eval
    def unigram(self) -> np.ndarray:
        """Unigram log-probs of the training split (computed once)."""
        if self._unigram is None:
            n_train = len(self.reader) - self.cfg.data.eval_sequences
            self._unigram = unigram_logprobs(self.reader, n_train, self.model.cfg.vocab_size, self.special.get(PAD))
        return self._unigram

    @torch.no_grad()
    def evaluate(self, seq_len: int) -> tuple[float, float] | None:
        """Mean next-token loss on held-out sequences (no FIM, at most ``evalMaxSamples``) over all ranks,
        and the unigram baseline's loss on the same targets."""
        if self.reader is None or not self.cfg.data.eval_sequences:
            return None
        samples = PackedSamples(self.reader, seq_len, self.cfg.data.eval_sequences, split="eval")
        mine = list(range(self.env.rank, min(len(samples), self.cfg.data.eval_max_samples), self.env.world_size))
        total = torch.zeros(3, dtype=torch.float64)
        logp = self.unigram()
        self.model.eval()
        for lo in range(0, len(mine), self.cfg.micro_batch_size):
            seqs = [samples[i] for i in mine[lo : lo + self.cfg.micro_batch_size]]
            batch = collate(seqs, [s.tokens != self.pad_id for s in seqs])
            labels = batch["labels"][batch["labels"] != IGNORE_INDEX].numpy()
            batch = {k: v.to(self.env.device) for k, v in batch.items()}
            batch["loss_denominator"] = 1.0
            total[0] += float(self.engine.eval_forward(batch))
            total[1] += labels.size
            total[2] += float(-logp[labels].sum())
        self.model.train()
        if dist.is_initialized():
            dist.all_reduce(total)
        n = max(1.0, float(total[1]))
        return float(total[0] / n), float(total[2] / n)

    # ------------------------------------------------------------------ loop
    def run(self, stop_after_steps: int | None = None) -> dict:
        """Train every stage (resuming if a checkpoint exists); ``stop_after_steps`` simulates a crash."""
        cfg, env = self.cfg, self.env
        self.maybe_resume()
        st = self.state
        self.evaluator.maybe(st.global_step, sum(self.steps), self.model, self.tok_path)  # before training
        peak = device_peak_tflops(env.device, cfg.peak_tflops)
        eval_loss = unigram_loss = None
        for index in range(st.stage_index, len(cfg.stages)):
            stage, n_steps = cfg.stages[index], self.steps[index]
            source = self.source(index)
            self._sampler = Sampler(len(source), cfg.seed + index)
            if index == st.stage_index and st.sampler is not None:
                self._sampler.load_state_dict(st.sampler)
            else:
                st.stage_index, st.stage_step = index, 0
            base_theta, base_scaling = self._base_rope
            scaling = stage.rope_scaling or base_scaling
            self.model.set_rope(stage.rope_theta or base_theta, scaling)
            scaling_note = f", ropeScaling {scaling.type} x{scaling.factor:g}" if scaling is not None else ""
            self.metrics.message(
                f"stage {index + 1}/{len(cfg.stages)} {stage.name!r}: {n_steps} steps, seqLen {stage.seq_len}, "
                f"lr {stage.lr:g} ({stage.schedule}), fimRate {stage.fim_rate}, "
                f"ropeTheta {self.model.cfg.rope_theta:g}{scaling_note}",
                st.global_step, stage.name,
            )
            fpt = flops_per_token(self.model.cfg, stage.seq_len)
            while st.stage_step < n_steps:
                record = self.train_step(source, stage, n_steps)
                if peak:
                    record["mfu"] = fpt * record["tokens_per_second"] / (peak * 1e12 * env.world_size)
                st.history.append({"step": st.global_step, "loss": record["loss"]})
                self.evaluator.maybe(st.global_step, sum(self.steps), self.model, self.tok_path)
                stage_end = st.stage_step == n_steps
                if stage_end or (cfg.eval_every_steps and st.global_step % cfg.eval_every_steps == 0):
                    evaluated = self.evaluate(stage.seq_len)
                    if evaluated is not None:
                        eval_loss, unigram_loss = evaluated
                        record["eval_loss"], record["unigram_eval_loss"] = eval_loss, unigram_loss
                if st.global_step % cfg.log_every_steps == 0 or stage_end or "eval_loss" in record:
                    self.metrics.log(record)
                if stop_after_steps is not None and st.global_step >= stop_after_steps:
                    self.metrics.close()
                    return {"steps": st.global_step, "stopped": True}
                every = cfg.checkpoint.every_steps
                if (every and st.global_step % every == 0) or stage_end:
                    self.save()
        summary = {"steps": st.global_step, "tokens": st.tokens, "eval_loss": eval_loss,
                   "unigram_eval_loss": unigram_loss,
                   "final_loss": st.history[-1]["loss"] if st.history else None}
        if cfg.export.enabled:
            summary["export"] = str(self.export())
        self.metrics.close()
        return summary

    def train_step(self, source, stage: TrainStageConfig, n_steps: int) -> dict:
        """One optimizer step over this rank's micro-batches; returns the step's record."""
        cfg, env, st = self.cfg, self.env, self.state
        t0 = time.perf_counter()
        batches = self.micro_batches(source, self._sampler)
        denominator = global_loss_tokens(batches)
        loss = torch.zeros((), dtype=torch.float64)
        for i, batch in enumerate(batches):
            batch["loss_denominator"] = float(denominator)
            loss += self.engine.forward_backward(batch, last_micro=i == len(batches) - 1).double().cpu()
        lr = stage_lr(stage, st.stage_step, n_steps)
        grad_norm = self.engine.step(lr)
        self.model.update_moe_bias()  # MoE aux-free balancing (no-op otherwise)
        if dist.is_initialized():
            dist.all_reduce(loss)  # sum of per-rank shares = mean token loss of the global batch
        step_tokens = cfg.micro_batch_size * cfg.grad_accum_steps * env.world_size * stage.seq_len
        st.stage_step, st.global_step = st.stage_step + 1, st.global_step + 1
        st.tokens += step_tokens
        return {"step": st.global_step, "stage": stage.name, "loss": float(loss), "lr": lr, "grad_norm": grad_norm,
                "tokens": st.tokens, "tokens_per_second": step_tokens / (time.perf_counter() - t0),
                **self.model.moe_metrics()}

    def export(self) -> Path:
        state = self.engine.model_state()  # every rank (ZeRO-3 gathers)
        folder = self.out / self.cfg.export.dir
        if self.env.rank == 0:
            export_hf(state, self.model.cfg, folder, self.tok_path, chat=self.cfg.objective == "sft")
            self.metrics.message(f"exported Hugging Face model to {folder}", self.state.global_step, "export")
        if dist.is_initialized():
            dist.barrier()
        return folder
