"""Llama tensor names: transformers' minus ``model.`` (the LM head stays top level)."""

from __future__ import annotations

from codekiln.workloads.model.family import StateDictAdapter


class LlamaStateDictAdapter(StateDictAdapter):
    """Prefix rule only; a tied head is omitted on export and re-tied on load."""
