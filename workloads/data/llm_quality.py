"""LLM quality scorer over any OpenAI-compatible endpoint (e.g. ``vllm serve``).

The model rates a file 0–10 on Seed-Coder's four criteria (readability, modularity,
clarity, reusability) and answers JSON; the score is their mean / 10 in ``[0, 1]``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.quality import select

CRITERIA = ("readability", "modularity", "clarity", "reusability")
PROMPT = """You are a code quality rater. Rate the following {language} file from 0 to 10 on each criterion:
- readability: clear names, consistent formatting, helpful comments;
- modularity: well-separated functions or classes with single responsibilities;
- clarity: straightforward logic without needless complexity or dead code;
- reusability: general, parameterised code that could be reused elsewhere.
Answer with one JSON object only: {{"readability": n, "modularity": n, "clarity": n, "reusability": n}}

```{language}
{code}
```"""
_JSON = re.compile(r"\{[^{}]*\}")


def parse_scores(content: str) -> float:
    """Mean of the four criteria / 10; raises ``ValueError`` if the answer lacks them."""
    for m in _JSON.finditer(content):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if all(isinstance(obj.get(c), int | float) for c in CRITERIA):
            return float(np.clip(np.mean([float(obj[c]) for c in CRITERIA]) / 10.0, 0.0, 1.0))
    raise ValueError(f"no JSON with {', '.join(CRITERIA)} in reply {content[:200]!r}")


class LLMQuality(Step):
    """Score documents with an LLM; ``metadata.quality_llm`` gets the 0–1 score."""

    name = "llm_quality"
    requires = ("httpx",)

    Params = step_params.LLMQualityParams

    def _score(self, client, doc: Document) -> float | None:
        lang = str(doc.metadata.get("language") or "code")
        body = {
            "model": self.params.model,
            "temperature": 0.0,
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": PROMPT.format(language=lang, code=doc.text[: self.params.max_chars])}
            ],
        }
        try:
            resp = client.post(f"{self.params.endpoint.rstrip('/')}/chat/completions", json=body)
            resp.raise_for_status()
            return parse_scores(resp.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
            self.ctx.reject(doc.id, f"llm_quality: {exc}")
            return None
        except Exception as exc:  # httpx errors
            self.ctx.reject(doc.id, f"llm_quality: {type(exc).__name__}: {exc}")
            return None

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        import httpx

        headers = {}
        if self.params.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(self.params.api_key_env, '')}"
        buffered = list(docs)
        with (
            httpx.Client(timeout=self.params.timeout_s, headers=headers) as client,
            ThreadPoolExecutor(self.params.concurrency) as pool,
        ):
            raw = list(pool.map(lambda d: self._score(client, d), buffered))
        ok = np.array([s is not None for s in raw], dtype=bool)
        scores = np.array([s if s is not None else -1.0 for s in raw])
        keep = np.zeros(len(buffered), dtype=bool)
        keep[ok] = select(scores[ok], self.params)
        for d, s, k, good in zip(buffered, scores, keep, ok, strict=True):
            if not good:
                self.stats.rejects["llm_error"] += 1
                if self.params.on_error == "keep":
                    yield d
                continue
            d.metadata["quality_llm"] = round(float(s), 4)
            if k:
                yield d
            else:
                self.stats.rejects["low_quality_llm"] += 1
