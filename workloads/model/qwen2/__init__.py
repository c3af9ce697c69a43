"""Qwen2 family: config, model, state-dict adapter."""

from codekiln.workloads.model.family import FamilySpec
from codekiln.workloads.model.qwen2.config import from_hf, to_hf
from codekiln.workloads.model.qwen2.model import build
from codekiln.workloads.model.qwen2.state_dict_adapter import Qwen2StateDictAdapter

SPEC = FamilySpec("qwen2", {"Qwen2ForCausalLM": "qwen2"}, from_hf, to_hf, Qwen2StateDictAdapter, build)
