"""Qwen3 family: config, model, state-dict adapter."""

from codekiln.workloads.model.family import FamilySpec
from codekiln.workloads.model.qwen3.config import from_hf, to_hf
from codekiln.workloads.model.qwen3.model import build
from codekiln.workloads.model.qwen3.state_dict_adapter import Qwen3StateDictAdapter

SPEC = FamilySpec("qwen3", {"Qwen3ForCausalLM": "qwen3"}, from_hf, to_hf, Qwen3StateDictAdapter, build)
