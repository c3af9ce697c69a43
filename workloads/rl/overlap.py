"""One-step-stale rollouts (``rolloutStaleness: 1``): generate step n+1 while step n trains.

Order within step n (all bookkeeping on the main thread, so runs stay reproducible):

1. take batch n (prefetched during step n−1 with the weights θ_{n−1}; synchronous on the first
   step), observe its pass rates, refill synchronously if dynamic sampling needs more;
2. recompute the batch's log-probs under θ_n (the proximal policy, ``old_logp``) and keep the
   engine's sampling log-probs as the *behaviour* log-probs;
3. draw step n+1's prompts and start generating + scoring them in a background thread on the
   rollout engine, which still holds θ_n;
4. train: PPO clips the ratio against θ_n and each token is weighted by exp(old − behaviour)
   (decoupled PPO, as in AReaL / verl async), so staleness is corrected, not ignored;
5. wait for the prefetch, then push θ_{n+1} into the engine.

The engine must not share weights with the trainer: the torch engine gets its own replica, and
colocated vLLM (which sleeps during training) is refused — use ``vllm.mode: server``. Off
(``rolloutStaleness: 0``, the default) none of this runs and the loop is the synchronous one.
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import Future, ThreadPoolExecutor


class AsyncRollouts:
    """Prefetches the next step's scored rollout batch in one background thread.

    Args:
        trainer: the RLTrainer (its engine, sampler, scorer and ``generate_scored``).
    """

    def __init__(self, trainer) -> None:
        cfg = trainer.cfg
        if cfg.engine == "vllm" and cfg.vllm.mode == "colocate":
            raise ValueError("rolloutStaleness 1 needs a rollout engine that runs during training: engine torch "
                             "or vllm.mode server (colocated vLLM sleeps while the trainer runs)")
        if cfg.algorithm == "dpo" or getattr(trainer, "agent", None) is not None:
            raise ValueError("rolloutStaleness 1 supports grpo, dr_grpo, dapo and rft (not dpo or agentic runs)")
        self.trainer = trainer
        if getattr(trainer.engine, "model", None) is trainer.model:  # never sample from weights being trained
            trainer.engine.model = copy.deepcopy(trainer.model)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codekiln-rollouts")
        self._future: Future | None = None
        self._for_step: int | None = None
        self._stats: list[dict] = []
        self.local = threading.local()  # .deferred: generate_scored leaves curriculum updates to the main thread

    @property
    def pending(self) -> bool:
        return self._future is not None

    def prefetch(self, step: int, task_ids: list[str], rollouts: int, stage, seed: int) -> None:
        """Start generating + scoring step ``step``'s first batch (prompts drawn by the caller)."""
        if self._future is not None:
            raise RuntimeError("a rollout prefetch is already running")
        self._stats = []

        def job():
            self.local.deferred = True
            return self.trainer.generate_scored(task_ids, rollouts, stage, seed, self._stats)

        self._future, self._for_step = self._pool.submit(job), step

    def take(self, step: int, gen_stats: list[dict]):
        """The prefetched batch for ``step`` (None when nothing was prefetched for it)."""
        if self._future is None or self._for_step != step:
            self.close_pending()
            return None
        batch = self._future.result()
        self._future = None
        gen_stats.extend(self._stats)
        return batch

    def wait(self) -> None:
        """Block until a running prefetch is done (before the engine's weights change under it)."""
        if self._future is not None:
            self._future.result()

    def close_pending(self) -> None:
        """Finish and drop a prefetch nobody will take (a resumed or re-planned step)."""
        self.wait()
        self._future = None

    def close(self) -> None:
        self.close_pending()
        self._pool.shutdown(wait=True)

