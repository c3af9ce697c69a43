"""An LLM for the pipeline: OpenAI-compatible client (retries, cache, token accounting) and ``codekiln serve``."""

from __future__ import annotations

from pathlib import Path

from codekiln.workloads.llm.config import LLMConfig


def build_client(config: LLMConfig, output_dir: str | Path | None = None):
    """An ``LLMClient`` for ``config``; caches under ``<output_dir>/llm_cache``; starts ``serve`` if no baseUrl."""
    from codekiln.workloads.llm.client import LLMClient

    base_url = config.base_url
    if not base_url and config.serve:
        from codekiln.workloads.llm.local import shared_server

        base_url = shared_server(config.serve)
    cache_dir = Path(output_dir) / "llm_cache" if output_dir is not None else None
    return LLMClient(config, cache_dir=cache_dir, base_url=base_url)


__all__ = ["LLMConfig", "build_client"]
