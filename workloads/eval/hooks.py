"""Periodic evaluation inside PretrainRun and RLRun: the trainers call ``RunEvaluator.maybe(step, ...)``.

Rank 0 generates with the live model (the torch engine; the model is put back in training mode
afterwards) and scores in the sandbox. Results go to ``<outputDir>/<eval.outputDir>/results.{jsonl,md}``,
``metrics.prom`` and the ``codekiln_eval_score_ratio`` gauge, and a one-line summary to
``status.progress.message``. Sharded models (ZeRO-3 / FSDP) are skipped with a note: evaluate their
export with ``codekiln eval`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from codekiln.workloads.eval.config import EvalConfig


class RunEvaluator:
    """Decides when to evaluate and runs it; ``rows`` keeps every result of the run."""

    def __init__(self, cfg: EvalConfig | None, out_dir: str | Path, *, rank: int = 0,
                 context_lengths: list[int] | None = None, sandbox_url: str | None = None,
                 sharded: bool = False):
        self.cfg = cfg
        self.out = Path(out_dir) / (cfg.output_dir if cfg else "eval")
        self.rank = rank
        self.context_lengths = sorted(set(context_lengths or [])) or None
        self.sandbox_url = sandbox_url
        self.sharded = sharded
        self.rows: list[dict[str, Any]] = []
        self._done: set[int] = set()

    @property
    def enabled(self) -> bool:
        return self.cfg is not None and self.cfg.enabled

    def maybe(self, step: int, total_steps: int, model, tokenizer, *,
              sharded: bool | None = None) -> list[dict[str, Any]] | None:
        """Evaluate after ``step`` (0 = before training) when the config says so; rank 0 only.

        Args:
            step: optimizer steps done.
            total_steps: steps of the whole run.
            model: the live Transformer (unsharded).
            tokenizer: an object with ``encode``/``decode``/``eot_id``, or a tokenizer.json path.
            sharded: the model's parameters are sharded now (overrides the constructor's value).
        """
        if not self.enabled or self.rank != 0 or step in self._done or not self.cfg.due(step, total_steps):
            return None
        self._done.add(step)
        if self.sharded if sharded is None else sharded:
            print(f"eval: step {step} skipped (sharded model; run `codekiln eval` on the export)", file=sys.stderr)
            return None
        if tokenizer is None:
            print(f"eval: step {step} skipped (the run has no tokenizer file)", file=sys.stderr)
            return None
        from codekiln.workloads.eval.generators import TorchGenerator
        from codekiln.workloads.eval.runner import run_eval, summary

        if isinstance(tokenizer, str | Path):
            from codekiln.workloads.rl.tokenizer import FileTokenizer

            tokenizer = FileTokenizer(tokenizer)
        rows = run_eval(self.cfg, TorchGenerator(model, tokenizer), self.out, step=step,
                        sandbox_url=self.sandbox_url, context_lengths=self.context_lengths)
        self.rows += rows
        print(f"{summary(rows)} (step {step}; {self.out / 'results.md'})", file=sys.stderr)
        return rows

    def before_after(self, metric: str = "pass@1") -> dict[str, dict[str, float]]:
        """``{benchmark: {"before": x, "after": y}}`` from the first and last evaluation of the run."""
        out: dict[str, dict[str, float]] = {}
        for row in self.rows:
            if metric in row:
                entry = out.setdefault(row["benchmark"], {"before": row[metric]})
                entry["after"] = row[metric]
        return out
