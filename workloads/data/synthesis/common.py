"""Shared pieces of the synthesis steps: the LLM step base (client, batches, token accounting), the
sandbox connection, and parsers for what models answer (scores, JSON, fenced code blocks)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document

SANDBOX_ENV = "CODEKILN_SANDBOX_URL"
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.S)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.S)


class LLMStep(Step):
    """A step that calls ``params.llm``: documents in batches of ``batchDocs``, tokens in ``stats.counters``."""

    _client = None

    @property
    def client(self):
        if self._client is None:
            from codekiln.workloads.llm import build_client

            self._client = build_client(self.params.llm, self.ctx.output_dir)
        return self._client

    def batches(self, docs: Iterable[Document]) -> Iterator[list[Document]]:
        batch: list[Document] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= self.params.batch_docs:
                yield batch
                batch = []
        if batch:
            yield batch

    def account(self) -> None:
        """Copy the client's token accounting into this step's stats (shown in the stats table)."""
        if self._client is None:
            return
        s = self._client.stats
        self.stats.counters.update({"llm_requests": s.requests, "llm_cache_hits": s.cache_hits,
                                    "llm_prompt_tokens": s.prompt_tokens,
                                    "llm_completion_tokens": s.completion_tokens, "llm_retries": s.retries})
        self._client.close()
        self._client = None

    def failed(self, doc: Document, result) -> bool:
        """Count a failed call; True when the document should still go on (``onError: keep``)."""
        reason = f"llm_error_{(result.error or 'error').split(':', 1)[0]}"
        if self.params.on_error == "keep":
            self.stats.counters[reason] += 1
            return True
        self.drop(doc, reason)
        return False

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        try:
            for batch in self.batches(docs):
                yield from self.process(batch)
        finally:
            self.account()

    def process(self, batch: list[Document]) -> Iterator[Document]:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------- sandbox
_SANDBOX: dict[str, Any] = {}
_SANDBOX_LOCK = threading.Lock()


def sandbox_url(configured: str | None) -> str:
    """``configured``, else ``$CODEKILN_SANDBOX_URL``, else a local sandbox server for this process."""
    url = configured or os.environ.get(SANDBOX_ENV)
    if url:
        return url
    with _SANDBOX_LOCK:
        if "url" not in _SANDBOX:
            from codekiln.workloads.sandbox.local import local_server

            stack = contextlib.ExitStack()
            _SANDBOX["url"] = stack.enter_context(local_server())
            atexit.register(stack.close)
        return _SANDBOX["url"]


def score_programs(url: str, jobs: Sequence[tuple[str, Any, str]], concurrency: int = 8) -> list:
    """``RewardResult`` per (code, TestSpec, language), scored concurrently on the sandbox."""
    from codekiln.workloads.sandbox.client import RewardClient

    async def go():
        async with RewardClient(url, max_concurrency=concurrency) as client:
            return await asyncio.gather(*(client.score_code(c, s, lang) for c, s, lang in jobs))

    return list(asyncio.run(go())) if jobs else []


# ---------------------------------------------------------------- parsing model answers
def code_blocks(text: str, default_language: str = "python") -> list[tuple[str, str]]:
    """(language, code) of every fenced block (untagged blocks get ``default_language``)."""
    from codekiln.workloads.sandbox.languages import canonical

    out = []
    for tag, body in _FENCE.findall(text):
        lang = canonical(tag) if tag else default_language
        out.append((lang or tag.lower(), body))
    return out


def parse_score(text: str, lo: float = 0.0, hi: float = 10.0, key: str = "score") -> float | None:
    """A number in [lo, hi]: ``{"score": n}`` JSON, ``score: n`` or the first number; None when absent."""
    obj = parse_json(text)
    if obj is not None and isinstance(obj.get(key), int | float):
        value = float(obj[key])
        return value if lo <= value <= hi else None
    m = re.search(rf"{key}\W*(-?\d+(?:\.\d+)?)", text, re.I)
    candidates = [m.group(1)] if m else _NUMBER.findall(text)
    for c in candidates:
        value = float(c)
        if lo <= value <= hi:
            return value
    return None


def parse_json(text: str) -> dict | None:
    """The first JSON object in ``text`` (None when there is none)."""
    for m in _JSON_OBJECT.finditer(text):
        with contextlib.suppress(json.JSONDecodeError):
            obj = json.loads(m.group(0))
            if isinstance(obj, dict):
                return obj
    return None


def split_tests(code: str) -> tuple[str, list[str]] | None:
    """(setup, [assert statements]) of a Python test block; None if it does not parse or has no assert."""
    import ast

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    lines = code.splitlines(keepends=True)
    setup, tests = [], []
    for node in tree.body:
        src = "".join(lines[node.lineno - 1:node.end_lineno])
        (tests if isinstance(node, ast.Assert) else setup).append(src.strip("\n"))
    return ("\n".join(setup) + "\n" if setup else ""), tests
