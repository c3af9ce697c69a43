"""Config of an OpenAI-compatible LLM endpoint used by pipeline steps and evaluation (torch-free)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator

from codekiln.workloads.schema import ConfigModel, problems

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"  # not CODEKILN_*: users may set it in spec.env


class SecretKeyRef(ConfigModel):
    """A key of a Kubernetes Secret; the operator injects it as the env var ``LLMConfig.api_key_env``."""

    name: str = Field(min_length=1, description="Secret name (same namespace as the resource).")
    key: str = Field(min_length=1, description="Key inside the Secret.")


class LLMConfig(ConfigModel):
    """Where and how to call an OpenAI-compatible server (``vllm serve``, ``codekiln serve``, a hosted API).

    The API key is read from the env var ``apiKeyEnv``; in a cluster ``apiKeySecretRef`` names the
    Secret whose key the operator injects under that env var (``env[].valueFrom.secretKeyRef``).
    """

    base_url: str | None = Field(
        default=None, description="Base URL ending in /v1, e.g. http://vllm:8000/v1. Unset with `serve`: local."
    )
    serve: str | None = Field(
        default=None,
        description="Local runs only: a Hugging Face export folder that `codekiln serve` starts and this config "
        "talks to (when baseUrl is unset).",
    )
    model: str = Field(default="default", min_length=1, description="Model name sent in every request.")
    api_key_env: str = Field(default=DEFAULT_API_KEY_ENV, min_length=1, description="Env var holding the API key.")
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret holding the API key; injected by the operator as `apiKeyEnv`."
    )
    max_concurrency: int = Field(default=8, ge=1, le=1024, description="Requests in flight at once.")
    max_retries: int = Field(default=5, ge=0, le=50, description="Retries on 429/5xx/transport/malformed replies.")
    backoff_s: float = Field(default=0.5, gt=0, description="First backoff (exponential, jittered, capped).")
    max_backoff_s: float = Field(default=30.0, gt=0, description="Longest wait between two attempts.")
    timeout_s: float = Field(default=300.0, gt=0, description="Timeout of one HTTP request.")
    cache: bool = Field(default=True, description="Cache responses on the run's storage (resumes never pay twice).")
    cache_dir: str | None = Field(default=None, description="Cache folder (default: <outputDir>/llm_cache).")
    temperature: float = Field(default=0.0, ge=0, le=2, description="Default sampling temperature (0 = greedy).")
    max_tokens: int = Field(default=512, ge=1, description="Default completion length limit (tokens).")
    seed: int = Field(default=0, description="Base seed sent with requests (sampled requests add their index).")

    @model_validator(mode="after")
    def _endpoint(self) -> LLMConfig:
        if not self.base_url and not self.serve:
            raise problems([("baseUrl", "set baseUrl (an OpenAI-compatible server) or serve (a model folder)")])
        return self

    def api_key(self) -> str | None:
        """The key from the environment (None when unset)."""
        return os.environ.get(self.api_key_env) or None


def secret_env_vars(spec: Any) -> list[dict[str, Any]]:
    """Container env for every LLM block in ``spec`` (a wire dict) naming ``apiKeySecretRef``:
    ``{name: <apiKeyEnv>, valueFrom: {secretKeyRef: {name, key}}}``, one per env name (first wins)."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("apiKeySecretRef")
            if isinstance(ref, dict) and ref.get("name") and ref.get("key"):
                env = node.get("apiKeyEnv") or DEFAULT_API_KEY_ENV
                found.setdefault(env, {"name": env, "valueFrom": {"secretKeyRef": {"name": ref["name"],
                                                                                   "key": ref["key"]}}})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return list(found.values())
