"""Text generators evaluation runs on: an OpenAI-compatible endpoint, or a live torch model (inside training).

Both answer ``generate(prompts, n=..., temperature=..., ...) -> [[text] * n per prompt]`` with stop
strings cut off. Sample ``i`` of a prompt uses ``seed + i``, so sampled runs are reproducible; ``temperature
0`` is greedy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the earliest stop string."""
    cut = len(text)
    for s in stop:
        if s and (i := text.find(s)) != -1:
            cut = min(cut, i)
    return text[:cut]


class Generator(Protocol):
    """What evaluation needs from a model."""

    failures: Counter

    def generate(self, prompts: Sequence[str], *, n: int, temperature: float, top_p: float, max_tokens: int,
                 seed: int, stop: Sequence[str]) -> list[list[str]]:
        """``n`` completions per prompt (failed requests come back as empty strings, counted in ``failures``)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer (an estimate where none is known)."""
        ...

    @property
    def context_length(self) -> int | None:
        """The model's context in tokens (None if unknown)."""
        ...


class EndpointGenerator:
    """Completions from an ``LLMClient`` (``/v1/completions``), ``max_concurrency`` at a time."""

    def __init__(self, client, tokenizer_path: str | None = None, context_length: int | None = None):
        self.client = client
        self.failures: Counter = Counter()
        self._tok = None
        self._context = context_length
        if tokenizer_path:
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(tokenizer_path)

    @property
    def context_length(self) -> int | None:
        return self._context

    def count_tokens(self, text: str) -> int:
        if self._tok is not None:
            return len(self._tok.encode(text, add_special_tokens=False).ids)
        return max(1, len(text) // 3)

    def generate(self, prompts, *, n, temperature, top_p, max_tokens, seed, stop) -> list[list[str]]:
        jobs = [(p, seed + i) for p in prompts for i in range(n)]
        results = self.client.map(
            lambda job: self.client.complete(job[0], temperature=temperature, top_p=top_p if temperature else None,
                                             max_tokens=max_tokens, seed=job[1], stop=list(stop) or None), jobs)
        texts = []
        for r in results:
            if not r.ok:
                self.failures[(r.error or "error").split(":", 1)[0]] += 1
            texts.append(cut_at_stop(r.text or "", stop))
        return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


class TorchGenerator:
    """Samples from an in-process model with the RL torch engine (prompts left-truncated to fit)."""

    def __init__(self, model, tokenizer, max_batch_size: int = 16):
        from codekiln.workloads.rl.engines.torch_engine import TorchEngine

        self.model = model
        self.tokenizer = tokenizer
        self.engine = TorchEngine(model, max_batch_size=max_batch_size)
        self.failures: Counter = Counter()

    @property
    def context_length(self) -> int:
        return int(self.model.cfg.max_seq_len)

    def count_tokens(self, text: str) -> int:
        try:
            return len(self.tokenizer.encode(text))
        except ValueError:
            return len(text)

    def generate(self, prompts, *, n, temperature, top_p, max_tokens, seed, stop) -> list[list[str]]:
        from codekiln.workloads.llm.server import GREEDY_TEMPERATURE
        from codekiln.workloads.rl.engines.base import SamplingParams

        max_tokens = max(1, min(max_tokens, self.context_length // 2))
        room = self.context_length - max_tokens
        encoded: list[list[int] | None] = []
        for p in prompts:
            try:
                ids = self.tokenizer.encode(p)
            except ValueError:  # e.g. a character the demo's char tokenizer lacks
                self.failures["unencodable_prompt"] += 1
                ids = None
            encoded.append((ids or [self.tokenizer.eot_id])[-room:] if ids is not None else None)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature if temperature > 0 else
                                GREEDY_TEMPERATURE, top_p=top_p if temperature > 0 else 1.0,
                                stop_token_ids=[self.tokenizer.eot_id])
        out: list[list[str]] = [[""] * n for _ in prompts]
        live = [i for i, ids in enumerate(encoded) if ids is not None]
        for j in range(n):  # one seed per sample index: sample j of every prompt uses seed + j
            if not live:
                break
            params.seed = seed + j
            completions = self.engine.generate([encoded[i] for i in live], params)
            for i, c in zip(live, completions, strict=True):
                ids = [t for t in c.token_ids if t != self.tokenizer.eot_id]
                out[i][j] = cut_at_stop(self.tokenizer.decode(ids), stop)
        return out
