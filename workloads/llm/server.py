"""``codekiln serve MODEL_DIR``: OpenAI-compatible ``/v1/completions`` and ``/v1/chat/completions``.

Serves a Hugging Face export folder (``config.json``, ``model.safetensors``, ``tokenizer.json``)
with the RL torch engine on CPU — enough for tests and the local demo. On GPUs serve the same
folder with ``vllm serve MODEL_DIR``; nothing here is meant as a production server.

Chats use codekiln's SFT format (``<|im_start|>role\\ncontent<|im_end|>\\n``, then
``<|im_start|>assistant\\n``) and stop at ``<|im_end|>`` or ``<|endoftext|>``. ``temperature: 0``
is greedy (sampling at T = 1e-4, i.e. argmax). Requests run one at a time in a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from codekiln.workloads.special_tokens import IM_END, IM_START

GREEDY_TEMPERATURE = 1e-4


class BadRequest(ValueError):
    """A request field is invalid (answered 400 with the field named)."""


def chat_prompt(messages: list[dict]) -> str:
    """The SFT chat format, ending with the assistant header."""
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadRequest(f"messages[{i}]: needs string 'role' and 'content'")
        out.append(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n")
    return "".join(out) + f"{IM_START}assistant\n"


class ServedModel:
    """An export folder loaded into our Transformer, with its tokenizer and a torch engine."""

    def __init__(self, folder: str | Path, name: str | None = None):
        from codekiln.workloads.model.hf import load_hf
        from codekiln.workloads.rl.engines.torch_engine import TorchEngine
        from codekiln.workloads.rl.tokenizer import FileTokenizer

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ValueError(f"MODEL_DIR {folder}: no config.json (give a PretrainRun's export folder)")
        self.model, self.cfg = load_hf(folder)  # generation runs under torch.no_grad (TorchEngine)
        self.model.eval()
        self.tokenizer = FileTokenizer(folder)
        self.engine = TorchEngine(self.model, max_batch_size=32)
        self.name = name or folder.name
        self.stop_ids = [self.tokenizer.eot_id]
        im_end = self.tokenizer._tok.token_to_id(IM_END)
        if im_end is not None:
            self.stop_ids.append(im_end)
        self.lock = threading.Lock()

    def generate(self, prompts: list[str], *, max_tokens: int, temperature: float, top_p: float, n: int,
                 seed: int | None, stop: list[str]) -> list[list[dict[str, Any]]]:
        """For each prompt, ``n`` choices ``{text, finish_reason, prompt_tokens, completion_tokens}``."""
        from codekiln.workloads.rl.engines.base import SamplingParams

        encoded = []
        for i, p in enumerate(prompts):
            ids = self.tokenizer.encode(p) or [self.tokenizer.eot_id]
            if len(ids) >= self.cfg.max_seq_len:
                raise BadRequest(f"prompt[{i}]: {len(ids)} tokens does not fit the model's context "
                                 f"({self.cfg.max_seq_len} tokens)")
            encoded.append(ids)
        room = min(self.cfg.max_seq_len - len(ids) for ids in encoded)
        params = SamplingParams(max_tokens=max(1, min(max_tokens, room)),
                                temperature=temperature if temperature > 0 else GREEDY_TEMPERATURE,
                                top_p=top_p, stop_token_ids=self.stop_ids, seed=seed)
        flat = [ids for ids in encoded for _ in range(n)]
        with self.lock:
            completions = self.engine.generate(flat, params)
        out: list[list[dict[str, Any]]] = []
        for i, ids in enumerate(encoded):
            choices = []
            for c in completions[i * n:(i + 1) * n]:
                tokens = [t for t in c.token_ids if t not in self.stop_ids]
                text = self.tokenizer.decode(tokens)
                finish = "stop" if c.finish_reason == "stop" else "length"
                for s in stop:
                    if s and s in text:
                        text, finish = text[: text.index(s)], "stop"
                choices.append({"text": text, "finish_reason": finish, "prompt_tokens": len(ids),
                                "completion_tokens": len(c.token_ids)})
            out.append(choices)
        return out


def _sampling(body: dict, default_max_tokens: int) -> dict[str, Any]:
    def num(name, default, kind=float, lo=None, hi=None):
        value = body.get(name, default)
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            raise BadRequest(f"{name}: expected a number, got {value!r}")
        value = kind(value)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise BadRequest(f"{name}: {value} is outside [{lo}, {hi}]")
        return value

    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest("stop: expected a string or a list of strings")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadRequest(f"seed: expected an integer, got {seed!r}")
    return {"max_tokens": num("max_tokens", default_max_tokens, int, 1), "temperature": num("temperature", 1.0,
            float, 0, 2), "top_p": num("top_p", 1.0, float, 1e-6, 1), "n": num("n", 1, int, 1, 64),
            "seed": seed, "stop": stop}


def build_app(served: ServedModel) -> web.Application:
    """The aiohttp application over one loaded model."""
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def run(fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))

    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=status)

    async def parse(request: web.Request) -> dict:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body: not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise BadRequest("body: expected a JSON object")
        return body

    def usage(choices: list[list[dict]]) -> dict:
        p = sum(c[0]["prompt_tokens"] for c in choices)
        c = sum(x["completion_tokens"] for cs in choices for x in cs)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def completions(request: web.Request) -> web.Response:
        try:
            body = await parse(request)
            prompt = body.get("prompt")
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise BadRequest("prompt: expected a string or a non-empty list of strings")
            choices = await run(served.generate, prompts, **_sampling(body, 16))
        except BadRequest as exc:
            return error(400, str(exc))
        flat = [{"index": i, "text": c["text"], "finish_reason": c["finish_reason"], "logprobs": None}
                for i, c in enumerate(x for cs in choices for x in cs)]
        return web.json_response({"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                                  "created": int(time.time()), "model": served.name, "choices": flat,
                                  "usage": usage(choices)})

    async def chat(request: web.Request) -> web.Response:
        try:
            body = await parse(request)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise BadRequest("messages: expected a non-empty list")
            choices = await run(served.generate, [chat_prompt(messages)], **_sampling(body, 512))
        except BadRequest as exc:
            return error(400, str(exc))
        flat = [{"index": i, "message": {"role": "assistant", "content": c["text"]},
                 "finish_reason": c["finish_reason"]} for i, c in enumerate(choices[0])]
        return web.json_response({"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                                  "created": int(time.time()), "model": served.name, "choices": flat,
                                  "usage": usage(choices)})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": served.name, "object": "model",
                                                               "owned_by": "codekiln",
                                                               "max_model_len": served.cfg.max_seq_len}]})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": served.name})

    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    return app


async def _serve(served: ServedModel, host: str, port: int) -> None:
    runner = web.AppRunner(build_app(served), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # the real port when port == 0
    print(json.dumps({"event": "listening", "host": host, "port": bound, "model": served.name}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """``serve MODEL_DIR [--host H] [--port P] [--model-name NAME]``."""
    parser = argparse.ArgumentParser(prog="codekiln serve", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="Hugging Face export folder (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    parser.add_argument("--model-name", help="name reported by /v1/models (default: the folder's name)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        served = ServedModel(args.model_dir, args.model_name)
    except (ValueError, OSError) as exc:
        print(f"codekiln serve: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(served, args.host, args.port))
    return 0
