"""OpenAI-compatible client for pipeline steps and evaluation.

Bounded concurrency (a thread pool of ``max_concurrency``), retries with tenacity on 429, 5xx,
transport errors and malformed replies (a ``Retry-After`` header sets the wait), a response cache
on the run's storage, and token accounting. A request that still fails after every retry is a
result with ``ok=False`` and a counted reason, never an exception::

    client = LLMClient(LLMConfig(base_url="http://vllm:8000/v1", model="coder"), cache_dir=out / "llm_cache")
    results = client.chat_many([[{"role": "user", "content": "Write fizzbuzz"}]])
    results[0].text, client.stats.to_dict()
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tenacity
from tenacity.wait import wait_base

from codekiln.workloads.llm.cache import ResponseCache
from codekiln.workloads.llm.config import LLMConfig

Message = dict[str, str]


class RetryableError(Exception):
    """A failure worth another attempt; ``reason`` is the counted name, ``retry_after`` the server's wish (s)."""

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.retry_after = retry_after


class FatalError(Exception):
    """A failure another attempt cannot fix (e.g. HTTP 400)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class LLMResult:
    """One reply: ``text`` (None when the request failed), its token counts, and the failure reason."""

    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass
class LLMStats:
    """Token accounting and failure counts (thread-safe updates through ``add``)."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    failures: Counter = field(default_factory=Counter)
    retry_reasons: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def count(self, counter: str, reason: str) -> None:
        with self._lock:
            getattr(self, counter)[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "retries": self.retries,
                "failures": dict(self.failures), "retry_reasons": dict(self.retry_reasons)}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _WaitRetryAfter(wait_base):
    """The server's ``Retry-After`` when it sent one (capped), else exponential backoff with jitter."""

    def __init__(self, initial: float, cap: float):
        self.cap = cap
        self.fallback = tenacity.wait_exponential_jitter(multiplier=initial, max=cap, jitter=initial)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return self.fallback(retry_state)


def _parse_reply(path: str, data: Any) -> tuple[str, str | None, int, int]:
    """(text, finish_reason, prompt tokens, completion tokens) of a chat or text completion reply."""
    choice = data["choices"][0]
    text = choice["message"]["content"] if path == "/chat/completions" else choice["text"]
    if not isinstance(text, str):
        raise TypeError(f"choices[0] content is {type(text).__name__}, not a string")
    usage = data.get("usage") or {}
    return text, choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0), \
        int(usage.get("completion_tokens") or 0)


class LLMClient:
    """Calls ``config.base_url`` (or ``base_url``); caches under ``cache_dir`` when ``config.cache``."""

    def __init__(self, config: LLMConfig, *, cache_dir: str | Path | None = None, base_url: str | None = None):
        self.config = config
        url = base_url or config.base_url
        if not url:
            raise ValueError("llm.baseUrl: no endpoint (start `codekiln serve` and set baseUrl, or use llm.serve)")
        self.base_url = url.rstrip("/")
        folder = config.cache_dir or cache_dir
        self.cache = ResponseCache(folder) if config.cache and folder else None
        self.stats = LLMStats()
        headers = {"Content-Type": "application/json"}
        key = config.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(timeout=config.timeout_s, headers=headers,
                                  limits=httpx.Limits(max_connections=config.max_concurrency))
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(config.max_retries + 1),
            wait=_WaitRetryAfter(config.backoff_s, config.max_backoff_s),
            retry=tenacity.retry_if_exception_type(RetryableError),
            before_sleep=self._on_retry,
            reraise=True,
        )

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ public API
    def chat(self, messages: Sequence[Message], **sampling: Any) -> LLMResult:
        """One chat completion. ``sampling``: temperature, max_tokens, seed, stop, top_p."""
        return self._request("/chat/completions", {"messages": list(messages)}, sampling)

    def complete(self, prompt: str, **sampling: Any) -> LLMResult:
        """One text completion (``/v1/completions``)."""
        return self._request("/completions", {"prompt": prompt}, sampling)

    def chat_many(self, conversations: Sequence[Sequence[Message]], **sampling: Any) -> list[LLMResult]:
        """Chat completions for many conversations, ``max_concurrency`` at a time, in order."""
        return self.map(lambda m: self.chat(m, **sampling), conversations)

    def complete_many(self, prompts: Sequence[str], **sampling: Any) -> list[LLMResult]:
        """Text completions for many prompts, ``max_concurrency`` at a time, in order."""
        return self.map(lambda p: self.complete(p, **sampling), prompts)

    def map(self, fn, items: Sequence) -> list[LLMResult]:
        """``fn`` over ``items`` on ``max_concurrency`` threads, in order."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.config.max_concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    # ------------------------------------------------------------ internals
    def _body(self, payload: dict, sampling: dict) -> dict:
        extra = {k: v for k, v in sampling.items() if v is not None}
        body = {"model": self.config.model, **payload,
                "temperature": extra.pop("temperature", self.config.temperature),
                "max_tokens": extra.pop("max_tokens", self.config.max_tokens),
                "seed": extra.pop("seed", self.config.seed)}
        body.update(extra)
        return body

    def _request(self, path: str, payload: dict, sampling: dict) -> LLMResult:
        body = self._body(payload, sampling)
        key = ResponseCache.key(path, body) if self.cache is not None else None
        if key is not None and (hit := self.cache.get(key)) is not None:
            self.stats.add(cache_hits=1)
            return LLMResult(hit["text"], hit.get("finish_reason"), hit.get("prompt_tokens", 0),
                             hit.get("completion_tokens", 0), cached=True)
        try:
            text, finish, n_in, n_out = self._retrying(self._attempt, path, body)
        except (RetryableError, FatalError) as exc:
            self.stats.count("failures", exc.reason)
            return LLMResult(None, error=str(exc))
        self.stats.add(prompt_tokens=n_in, completion_tokens=n_out)
        if key is not None:
            self.cache.put(key, {"text": text, "finish_reason": finish, "prompt_tokens": n_in,
                                 "completion_tokens": n_out})
        return LLMResult(text, finish, n_in, n_out)

    def _attempt(self, path: str, body: dict) -> tuple[str, str | None, int, int]:
        self.stats.add(requests=1)
        try:
            resp = self._http.post(self.base_url + path, json=body)
        except httpx.TimeoutException as exc:
            raise RetryableError("timeout", str(exc)) from exc
        except httpx.TransportError as exc:
            raise RetryableError("transport_error", f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryableError(f"http_{resp.status_code}", resp.text[:200],
                                 parse_retry_after(resp.headers.get("Retry-After")))
        if resp.status_code >= 400:
            raise FatalError(f"http_{resp.status_code}", resp.text[:300])
        try:
            return _parse_reply(path, resp.json())
        except (ValueError, KeyError, IndexError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise RetryableError("malformed_response", f"{type(exc).__name__}: {exc}; {resp.text[:120]!r}") from exc

    def _on_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.stats.add(retries=1)
        self.stats.count("retry_reasons", getattr(exc, "reason", type(exc).__name__))
