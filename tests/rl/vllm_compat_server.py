"""A real HTTP server speaking the subset of vLLM's OpenAI-compatible API that the server-mode engine uses
(``GET /v1/models``, ``POST /v1/completions`` with token-id prompts, ``n``, ``seed``, ``stop_token_ids``,
``logprobs: 0``, ``return_token_ids``, ``return_tokens_as_token_ids``), answering with vLLM's response shape.
Generation is our torch engine on a tiny model, so CPU tests exercise the client end to end."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from codekiln.workloads.rl.engines import SamplingParams
from codekiln.workloads.rl.engines.torch_engine import TorchEngine


class CompatServer:
    """``with CompatServer(model) as url: ...``; ``requests`` records every completions body."""

    def __init__(self, model, name: str = "codekiln-test") -> None:
        self.engine, self.name, self.requests = TorchEngine(model), name, []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def _send(self, code: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": server.name, "object": "model"}]})
                return self._send(404, {"error": "not found"})

            def do_POST(self):
                if self.path != "/v1/completions":
                    return self._send(404, {"error": "not found"})
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(req)
                params = SamplingParams(max_tokens=req["max_tokens"], temperature=req["temperature"],
                                        top_p=req["top_p"], stop_token_ids=req.get("stop_token_ids", []),
                                        seed=req.get("seed"))
                with server._lock:
                    outs = server.engine.generate([req["prompt"]] * req["n"], params)
                def top(o):
                    return [{f"token_id:{t}": lp} for t, lp in zip(o.token_ids, o.logprobs, strict=True)]

                choices = [{
                    "index": i, "text": "", "finish_reason": o.finish_reason, "stop_reason": None,
                    "prompt_token_ids": req["prompt"], "token_ids": o.token_ids,
                    "logprobs": {"tokens": [f"token_id:{t}" for t in o.token_ids], "token_logprobs": o.logprobs,
                                 "top_logprobs": top(o),
                                 "text_offset": [0] * len(o.token_ids)},
                } for i, o in enumerate(outs)]
                return self._send(200, {"id": "cmpl-0", "object": "text_completion", "model": server.name,
                                        "choices": choices})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
