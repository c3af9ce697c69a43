"""Qwen2 tensor names: transformers' minus ``model.`` (q/k/v biases included)."""

from __future__ import annotations

from codekiln.workloads.model.family import StateDictAdapter


class Qwen2StateDictAdapter(StateDictAdapter):
    """Prefix rule only; a tied head (small Qwen2 sizes) is omitted on export and re-tied on load."""
