"""vLLM rollouts from a separate vLLM Deployment (``vllm.mode: server``), for policies too large to colocate.

Generation goes through vLLM's OpenAI-compatible ``POST /v1/completions`` with token-id prompts
(``return_token_ids``, ``return_tokens_as_token_ids``, ``logprobs: 0``); identical consecutive
prompts (a GRPO group) become one request with ``n`` = group size and one seed, so the group's
samples differ and stay reproducible. Every rank sends its own requests.

Weights go to the server after every optimizer step over vLLM's NCCL weight-transfer engine
(the server runs with ``--weight-transfer-config '{"backend": "nccl"}'``), through TRL's
maintained client (``trl.generation.vllm_client.VLLMClient``: ``/init_weight_transfer_engine``,
``/update_weights``, ``/reset_prefix_cache``). Rank 0 streams; every rank iterates the weight
stream so that the per-parameter all-gathers of a sharded policy stay collective.
"""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby

import torch

from codekiln.workloads.rl.engines.base import Completion, SamplingParams, Weights, finish_completion, iter_weights


def _post(url: str, payload: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def prompt_runs(prompts: list[list[int]]) -> list[tuple[int, int]]:
    """(start row, count) of each run of identical consecutive prompts."""
    runs, start = [], 0
    for _, group in groupby(range(len(prompts)), key=lambda i: tuple(prompts[i])):
        n = len(list(group))
        runs.append((start, n))
        start += n
    return runs


def completions_payload(model: str, prompt: list[int], n: int, params: SamplingParams, seed: int | None) -> dict:
    """The ``/v1/completions`` body for ``n`` samples of one token-id prompt."""
    body = {
        "model": model, "prompt": prompt, "n": n, "max_tokens": params.max_tokens,
        "temperature": params.temperature, "top_p": params.top_p, "stop_token_ids": list(params.stop_token_ids),
        "logprobs": 0, "return_token_ids": True, "return_tokens_as_token_ids": True,
        "skip_special_tokens": False,
    }
    if seed is not None:
        body["seed"] = seed
    return body


def parse_choice(choice: dict) -> tuple[list[int], list[float], str]:
    """Token ids, sampled-token log-probs and finish reason of one ``/v1/completions`` choice."""
    lp = choice.get("logprobs") or {}
    tokens = lp.get("tokens") or []
    ids = choice.get("token_ids")
    if ids is None:  # older servers: only "token_id:<id>" strings
        ids = [int(t.removeprefix("token_id:")) for t in tokens]
    logprobs = [float(x) if x is not None else 0.0 for x in (lp.get("token_logprobs") or [])]
    if len(logprobs) != len(ids):
        logprobs = [0.0] * len(ids)
    return list(ids), logprobs, "stop" if choice.get("finish_reason") == "stop" else "length"


class VLLMServerEngine:
    """Rollouts from a vLLM server; weights pushed over NCCL after each step.

    Args:
        model: the policy (its config names the tensors; shapes come from its state dict).
        config: the spec's ``vllm`` block (``serverUrl``, ``serverTimeoutS``, ``dtype``).
        max_concurrency: requests in flight per rank.
    """

    def __init__(self, model, config, max_concurrency: int = 32) -> None:
        if not config.server_url:
            raise ValueError("vllm.serverUrl is required when vllm.mode is 'server'")
        self.base_url = config.server_url.rstrip("/")
        self.config = config
        self.model = model
        self.max_concurrency = max_concurrency
        self._served: str | None = None
        self._client = None
        self._metadata: list[tuple[str, str, list[int]]] | None = None

    @property
    def served_model(self) -> str:
        if self._served is None:
            self._served = _get(f"{self.base_url}/v1/models", self.config.server_timeout_s)["data"][0]["id"]
        return self._served

    # the server has its own GPUs: nothing to release while the trainer runs
    def sleep(self) -> None:
        return None

    def wake_up(self) -> None:
        return None

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        runs = prompt_runs(prompts)
        url = f"{self.base_url}/v1/completions"

        def request(k: int) -> dict:
            start, n = runs[k]
            seed = None if params.seed is None else params.seed * 1_000_003 + k
            return _post(url, completions_payload(self.served_model, prompts[start], n, params, seed),
                         self.config.server_timeout_s)

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(runs)))) as pool:
            answers = list(pool.map(request, range(len(runs))))
        out: list[Completion] = []
        for (start, n), answer in zip(runs, answers, strict=True):
            choices = sorted(answer["choices"], key=lambda c: c.get("index", 0))
            if len(choices) != n:
                raise RuntimeError(f"vLLM server {self.base_url} returned {len(choices)} choices for n={n}")
            for j, choice in enumerate(choices):
                ids, logprobs, reason = parse_choice(choice)
                out.append(finish_completion(ids, logprobs, reason, params, start + j))
        return out

    # -- weights
    def _hf_stream(self, weights: Weights):
        from codekiln.workloads.model.hf import to_hf_state_dict

        dtype = getattr(torch, self.config.dtype)
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        for name, tensor in iter_weights(weights):
            full = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            for hf_name, hf_tensor in to_hf_state_dict({name: full}, self.model.cfg).items():
                yield hf_name, hf_tensor.to(device=device, dtype=dtype)

    def weight_metadata(self) -> list[tuple[str, str, list[int]]]:
        """(HF name, vLLM dtype name, global shape) of every streamed tensor, without gathering anything."""
        if self._metadata is None:
            from codekiln.workloads.model.hf import to_hf_state_dict

            shapes = {k: torch.empty(tuple(v.shape), device="meta") for k, v in self.model.state_dict().items()}
            self._metadata = [(name, self.config.dtype, list(t.shape))
                              for name, t in to_hf_state_dict(shapes, self.model.cfg).items()]
        return self._metadata

    def update_weights(self, weights: Weights) -> None:
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        stream = self._hf_stream(weights)
        if rank != 0:
            for _ in stream:  # take part in the gathers
                pass
            return
        if self._client is None:
            try:
                from trl.generation.vllm_client import VLLMClient
            except ImportError as exc:  # pragma: no cover - depends on the image
                raise RuntimeError("vllm.mode 'server' pushes weights with TRL's VLLMClient: pip install "
                                   "'codekiln[vllm]'") from exc
            self._client = VLLMClient(base_url=self.base_url, connection_timeout=self.config.server_timeout_s)
            self._client.init_communicator(device=torch.cuda.current_device())
        self._client.update_named_params(self.weight_metadata(), stream)
        self._client.reset_prefix_cache()
