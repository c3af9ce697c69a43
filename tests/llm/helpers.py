"""Shared test helpers: a tiny random model exported to a temp folder, and scripted OpenAI-style servers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from aiohttp import web

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "def greet(name):\n    print('hello', name)\n",
    "for i in range(10):\n    total += i * 2\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "Write a function that returns the sum of a list.\n",
    "import os\nimport sys\n\nif __name__ == '__main__':\n    main()\n",
]


@functools.cache
def tiny_export() -> Path:
    """A random-weight Llama export (48-dim, 2 layers, 640-token context) with codekiln's BPE tokenizer."""
    import torch

    from codekiln.workloads.data.tokenizer import save_tokenizer, train_bpe
    from codekiln.workloads.model.config import ModelConfig
    from codekiln.workloads.model.hf import export_hf
    from codekiln.workloads.model.transformer import Transformer

    root = Path(tempfile.mkdtemp(prefix="codekiln-tiny-"))
    tok = train_bpe(CORPUS * 30, vocab_size=400)
    save_tokenizer(tok, root / "tokenizer.json")
    torch.manual_seed(0)
    cfg = ModelConfig(preset="tiny", vocab_size=tok.get_vocab_size(), dim=48, n_heads=4, n_kv_heads=2,
                      n_layers=2, ffn_dim=96, max_seq_len=640)
    return export_hf(Transformer(cfg), cfg, root / "hf", tokenizer_json=root / "tokenizer.json")


Handler = Callable[[str, dict, int], web.StreamResponse]


@contextlib.contextmanager
def scripted_server(handler: Handler) -> Iterator[str]:
    """An aiohttp server on a free port; ``handler(path, body, call_number)`` answers every POST.

    Yields the base URL ending in /v1. ``call_number`` counts calls from 0 across both endpoints.
    """
    calls = {"n": 0}
    ready = threading.Event()
    state: dict = {}

    async def on_post(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        n = calls["n"]
        calls["n"] += 1
        return handler(request.path.removeprefix("/v1"), body, n)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", on_post)
        app.router.add_post("/v1/chat/completions", on_post)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["port"] = site._server.sockets[0].getsockname()[1]
        state["stop"] = asyncio.Event()
        ready.set()
        await state["stop"].wait()
        await runner.cleanup()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{state['port']}/v1"
    finally:
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
        loop.close()


def reply(path: str, text: str, prompt_tokens: int = 3, completion_tokens: int = 5) -> web.Response:
    """A well-formed OpenAI reply for ``path`` ('/completions' or '/chat/completions')."""
    choice = {"index": 0, "finish_reason": "stop"}
    if path == "/chat/completions":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return web.json_response({"choices": [choice], "usage": {"prompt_tokens": prompt_tokens,
                                                             "completion_tokens": completion_tokens}})


def malformed() -> web.Response:
    return web.Response(text='{"choices": [ {"text": "trunc', content_type="application/json")


def prompt_of(path: str, body: dict) -> str:
    """The prompt text of a request (the last user message of a chat)."""
    if path == "/chat/completions":
        return body["messages"][-1]["content"]
    return body["prompt"]
