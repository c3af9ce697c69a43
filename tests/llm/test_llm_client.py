"""LLMClient against real HTTP servers: 429 with Retry-After, 500, malformed JSON, the served model, the cache."""

from __future__ import annotations

import time

import pytest
from aiohttp import web

from codekiln.workloads.llm.client import LLMClient, parse_retry_after
from codekiln.workloads.llm.config import LLMConfig

from .helpers import malformed, reply, scripted_server


def _client(url: str, tmp_path=None, **kw) -> LLMClient:
    cfg = LLMConfig(base_url=url, backoff_s=0.01, max_backoff_s=5.0, **kw)
    return LLMClient(cfg, cache_dir=tmp_path)


def test_429_with_retry_after_is_honoured_then_succeeds():
    def handler(path, body, n):
        if n == 0:
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
        return reply(path, "ok")

    with scripted_server(handler) as url, _client(url) as client:
        t0 = time.monotonic()
        res = client.chat([{"role": "user", "content": "hi"}])
        waited = time.monotonic() - t0
    assert res.ok and res.text == "ok"
    assert waited >= 0.95  # the header said 1 s; the exponential fallback would have been ~0.01 s
    assert client.stats.retries == 1 and client.stats.retry_reasons == {"http_429": 1}
    assert client.stats.prompt_tokens == 3 and client.stats.completion_tokens == 5


def test_500_is_retried_and_persistent_500_is_a_counted_failure():
    def flaky(path, body, n):
        return web.Response(status=500, text="boom") if n < 2 else reply(path, "fine")

    with scripted_server(flaky) as url, _client(url) as client:
        assert client.complete("x").text == "fine"
    assert client.stats.retry_reasons == {"http_500": 2}

    with scripted_server(lambda p, b, n: web.Response(status=503, text="down")) as url, \
            _client(url, max_retries=2) as client:
        res = client.complete("x")
    assert not res.ok and "http_503" in res.error
    assert client.stats.failures == {"http_503": 1} and client.stats.requests == 3


def test_malformed_json_is_retried_or_dropped_with_a_reason_never_a_crash():
    with scripted_server(lambda p, b, n: malformed() if n == 0 else reply(p, "good")) as url, _client(url) as c:
        assert c.chat([{"role": "user", "content": "q"}]).text == "good"
    assert c.stats.retry_reasons == {"malformed_response": 1}

    shapes = [malformed, lambda: web.json_response({"choices": []}),
              lambda: web.json_response({"choices": [{"text": None}]})]  # a fresh response per call
    with scripted_server(lambda p, b, n: shapes[n % 3]()) as url, _client(url, max_retries=2) as c:
        results = c.complete_many(["a", "b"])
    assert [r.ok for r in results] == [False, False]
    assert c.stats.failures == {"malformed_response": 2}


def test_400_is_not_retried():
    with scripted_server(lambda p, b, n: web.json_response({"error": "bad"}, status=400)) as url, _client(url) as c:
        res = c.complete("x")
    assert not res.ok and c.stats.requests == 1 and c.stats.failures == {"http_400": 1}


def test_concurrency_is_bounded():
    import threading

    live = {"now": 0, "max": 0}
    lock = threading.Lock()

    def handler(path, body, n):
        return reply(path, body["prompt"])

    # count in-flight requests on the client side through a wrapped transport
    with scripted_server(handler) as url, _client(url, max_concurrency=3) as client:
        original = client._http.post

        def post(*a, **kw):
            with lock:
                live["now"] += 1
                live["max"] = max(live["max"], live["now"])
            try:
                time.sleep(0.05)
                return original(*a, **kw)
            finally:
                with lock:
                    live["now"] -= 1

        client._http.post = post
        results = client.complete_many([f"p{i}" for i in range(12)])
    assert [r.text for r in results] == [f"p{i}" for i in range(12)]
    assert live["max"] == 3


def test_cache_on_disk_means_a_resumed_run_never_pays_twice(tmp_path):
    def handler(path, body, n):
        return reply(path, f"answer-{n}")

    with scripted_server(handler) as url:
        with _client(url, tmp_path) as first:
            a = first.complete_many(["x", "y"], seed=1)
        with _client(url, tmp_path) as second:  # a new process-like client on the same storage
            b = second.complete_many(["x", "y"], seed=1)
            c = second.complete("x", seed=2)  # another seed is another request
    assert [r.text for r in a] == [r.text for r in b] and all(r.cached for r in b)
    assert second.stats.requests == 1 and second.stats.cache_hits == 2 and not c.cached


def test_failures_are_not_cached(tmp_path):
    with scripted_server(lambda p, b, n: web.Response(status=500) if n < 2 else reply(p, "late")) as url:
        with _client(url, tmp_path, max_retries=0) as c:
            assert not c.complete("x").ok
        with _client(url, tmp_path, max_retries=0) as c:
            assert not c.complete("x").ok
            assert c.complete("x").text == "late"


def test_served_model_over_http(served_url, tmp_path):
    with _client(served_url, tmp_path, max_tokens=6) as client:
        results = client.chat_many([[{"role": "user", "content": f"task {i}"}] for i in range(3)])
    assert all(r.ok and isinstance(r.text, str) for r in results)
    assert client.stats.completion_tokens >= 3 and client.stats.prompt_tokens > 0


def test_api_key_from_env(monkeypatch):
    seen = {}

    def handler(path, body, n):
        return reply(path, "k")

    monkeypatch.setenv("MY_LLM_KEY", "sekret")
    with scripted_server(handler) as url:
        client = LLMClient(LLMConfig(base_url=url, api_key_env="MY_LLM_KEY"))
        seen["auth"] = client._http.headers.get("authorization")
        client.close()
    assert seen["auth"] == "Bearer sekret"


@pytest.mark.parametrize(("value", "expected"), [("3", 3.0), ("0.5", 0.5), (None, None), ("soon", None)])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected
