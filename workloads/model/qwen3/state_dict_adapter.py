"""Qwen3 tensor names: transformers' minus ``model.`` (q/k/v biases, q_norm/k_norm included)."""

from __future__ import annotations

from codekiln.workloads.model.family import StateDictAdapter


class Qwen3StateDictAdapter(StateDictAdapter):
    """Prefix rule only; a tied head (small Qwen3 sizes) is omitted on export and re-tied on load."""
