"""What every model family shares: reading/writing transformers' config.json and state dicts.

A family (``llama/``, ``qwen2/``, ``qwen3/``, ``qwen_moe/``, torchtitan style) is a config
translator (``config.json`` ↔ ``ModelConfig``) plus a state-dict adapter (transformers'
tensor names and layout ↔ ours); the model itself is the shared ``Transformer``. This module
holds the common parts: both RoPE layouts (transformers 4's ``rope_theta`` + ``rope_scaling``,
transformers 5's ``rope_parameters``), the refusal of features we do not implement (naming the
field), and the name mapping with its shape checks.
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import TYPE_CHECKING, Any

from codekiln.workloads.model.config import ModelConfig, MoEConfig, RopeScalingConfig

if TYPE_CHECKING:  # the config half of this module stays torch-free (family config.py modules import it)
    import torch

_ROPE_KEYS = {
    "rope_type", "type", "rope_theta", "factor", "original_max_position_embeddings", "low_freq_factor",
    "high_freq_factor", "beta_fast", "beta_slow", "attention_factor", "mscale", "mscale_all_dim", "truncate",
    "partial_rotary_factor",
}


class CheckpointError(ValueError):
    """A checkpoint folder that codekiln cannot load exactly; the message names the field or tensor."""


def _field(hf: dict, key: str, folder: str, default: Any = ...) -> Any:
    if key in hf and hf[key] is not None:
        return hf[key]
    if default is ...:
        raise CheckpointError(f"{folder}/config.json: missing {key!r}")
    return default


def read_rope(hf: dict, folder: str) -> tuple[float, RopeScalingConfig | None]:
    """(theta, scaling) from either config.json layout."""
    params = hf.get("rope_parameters")
    where = "rope_parameters"
    if params is None:
        params, where = dict(hf.get("rope_scaling") or {}), "rope_scaling"
        params.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    if not isinstance(params, dict):
        raise CheckpointError(f"{folder}/config.json: {where} must be an object, got {type(params).__name__}")
    if params and set(params) & {"full_attention", "sliding_attention"}:
        raise CheckpointError(f"{folder}/config.json: {where} per layer type is not supported")
    unknown = sorted(set(params) - _ROPE_KEYS)
    if unknown:
        raise CheckpointError(f"{folder}/config.json: {where} has fields codekiln does not implement: {unknown}")
    if float(params.get("partial_rotary_factor", 1.0) or 1.0) != 1.0:
        raise CheckpointError(f"{folder}/config.json: {where}.partial_rotary_factor "
                              f"{params['partial_rotary_factor']} (partial RoPE) is not supported")
    theta = float(params.get("rope_theta") or hf.get("rope_theta") or 10000.0)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind in (None, "default"):
        return theta, None
    if kind not in ("linear", "dynamic", "llama3", "yarn"):
        raise CheckpointError(f"{folder}/config.json: {where}.rope_type {kind!r} is not supported "
                              "(codekiln implements default, linear, dynamic, llama3, yarn)")
    if params.get("factor") is None and kind != "yarn":
        raise CheckpointError(f"{folder}/config.json: {where}.factor is required for rope_type {kind!r}")
    original = hf.get("original_max_position_embeddings") or params.get("original_max_position_embeddings") \
        or hf.get("max_position_embeddings")
    fields = {k: params[k] for k in ("low_freq_factor", "high_freq_factor", "attention_factor", "mscale",
                                     "mscale_all_dim", "truncate") if params.get(k) is not None}
    for key in ("beta_fast", "beta_slow"):
        if params.get(key):  # transformers: `or 32` / `or 1`
            fields[key] = params[key]
    factor = params.get("factor")
    if factor is None:  # yarn without factor: max_position_embeddings / original (transformers' rule)
        factor = hf["max_position_embeddings"] / original
    try:
        return theta, RopeScalingConfig(type=kind, factor=factor, original_max_position_embeddings=original, **fields)
    except ValueError as exc:
        raise CheckpointError(f"{folder}/config.json: {where}: {exc}") from None


def write_rope(cfg: ModelConfig) -> dict:
    """transformers 4 layout (``rope_theta`` + ``rope_scaling``), which transformers 5 and vLLM also read."""
    out: dict[str, Any] = {"rope_theta": cfg.rope_theta}
    s = cfg.rope_scaling
    if s is not None:
        scaling: dict[str, Any] = {"rope_type": s.type, "type": s.type, "factor": s.factor}
        if s.type in ("llama3", "yarn"):
            scaling["original_max_position_embeddings"] = s.original_max_position_embeddings
        if s.type == "llama3":
            scaling.update(low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor)
        if s.type == "yarn":
            scaling.update(beta_fast=s.beta_fast, beta_slow=s.beta_slow, truncate=s.truncate)
            for key in ("attention_factor", "mscale", "mscale_all_dim"):
                if getattr(s, key) is not None:
                    scaling[key] = getattr(s, key)
        out["rope_scaling"] = scaling
    return out


def refuse_unsupported(hf: dict, folder: str, max_seq_len: int) -> None:
    """Raise for config.json features that would change the model's function but that codekiln lacks."""
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise CheckpointError(f"{folder}/config.json: hidden_act {act!r} is not supported (silu only)")
    if hf.get("mlp_bias"):
        raise CheckpointError(f"{folder}/config.json: mlp_bias true is not supported")
    if float(hf.get("attention_dropout") or 0.0) > 0:
        raise CheckpointError(f"{folder}/config.json: attention_dropout {hf['attention_dropout']} is not supported")
    if int(hf.get("pretraining_tp") or 1) != 1:
        raise CheckpointError(f"{folder}/config.json: pretraining_tp {hf['pretraining_tp']} is not supported")
    window = hf.get("sliding_window")
    sliding_layers = [i for i, t in enumerate(hf.get("layer_types") or []) if t == "sliding_attention"]
    if (hf.get("use_sliding_window") or sliding_layers) and window and int(window) < max_seq_len:
        raise CheckpointError(
            f"{folder}/config.json: use_sliding_window with sliding_window {window} < max_position_embeddings "
            f"{max_seq_len} (sliding-window attention is not implemented; set use_sliding_window false)"
        )
    if hf.get("layer_types") and any(t not in ("full_attention", "sliding_attention") for t in hf["layer_types"]):
        raise CheckpointError(f"{folder}/config.json: layer_types {sorted(set(hf['layer_types']))} not supported")


def common_config(hf: dict, folder: str, family: str, **extra) -> ModelConfig:
    """The dense fields every family shares, plus ``extra`` family switches."""
    max_seq_len = int(_field(hf, "max_position_embeddings", folder, 8192))
    refuse_unsupported(hf, folder, max_seq_len)
    theta, scaling = read_rope(hf, folder)
    n_heads = int(_field(hf, "num_attention_heads", folder))
    try:
        return ModelConfig(
            family=family,
            vocab_size=int(_field(hf, "vocab_size", folder)),
            dim=int(_field(hf, "hidden_size", folder)),
            n_layers=int(_field(hf, "num_hidden_layers", folder)),
            n_heads=n_heads,
            n_kv_heads=int(_field(hf, "num_key_value_heads", folder, n_heads)),
            head_dim=hf.get("head_dim") or None,
            ffn_dim=int(_field(hf, "intermediate_size", folder)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            rope_theta=theta,
            rope_scaling=scaling,
            norm_eps=float(_field(hf, "rms_norm_eps", folder, 1e-6)),
            max_seq_len=max_seq_len,
            **extra,
        )
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(f"{folder}/config.json: {exc}") from None


def common_hf_config(cfg: ModelConfig, architecture: str, model_type: str) -> dict:
    """The config.json fields every family writes."""
    return {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        **write_rope(cfg),
        "tie_word_embeddings": cfg.tie_embeddings,
        "use_cache": True,
        "attention_dropout": 0.0,
    }


def require(cfg: ModelConfig, family: str, **expected) -> None:
    """Refuse to export switches the family's config.json cannot express (names the model field)."""
    for key, want in expected.items():
        have = getattr(cfg, key)
        if have != want:
            camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), key)
            raise ValueError(f"model.{camel} {have!r} cannot be exported as family {family} (it needs {want!r})")


def moe_fields(hf: dict, folder: str, shared: bool) -> MoEConfig:
    """MoEConfig from a Qwen MoE config.json."""
    try:
        return MoEConfig(
            num_experts=int(hf.get("num_local_experts") or _field(hf, "num_experts", folder)),
            top_k=int(_field(hf, "num_experts_per_tok", folder)),
            expert_ffn_dim=int(_field(hf, "moe_intermediate_size", folder)),
            shared_expert_ffn_dim=int(_field(hf, "shared_expert_intermediate_size", folder)) if shared else 0,
            shared_expert_gate=shared,
            norm_topk_prob=bool(hf.get("norm_topk_prob", False)),
            sparse_step=int(hf.get("decoder_sparse_step") or 1),
            dense_layers=list(hf.get("mlp_only_layers") or []),
            aux_loss_coef=float(hf.get("router_aux_loss_coef", 0.001)),
        )
    except CheckpointError:
        raise
    except ValueError as exc:
        raise CheckpointError(f"{folder}/config.json: {exc}") from None


# ---------------------------------------------------------------------- state dicts
def to_hf_state(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our names -> transformers' (``model.`` prefix, per-expert tensors, tied head omitted, NormHead baked)."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith((".expert_bias", ".load_counts")):
            continue
        if name == "lm_head.weight":
            if cfg.tie_embeddings:
                continue
            if cfg.norm_head:
                tensor = torch.nn.functional.normalize(tensor.float(), dim=-1).to(tensor.dtype)
            out[name] = tensor
            continue
        m = re.fullmatch(r"(layers\.\d+\.mlp\.experts)\.(gate_up_proj|down_proj)", name)
        if m:
            prefix = f"model.{m.group(1)}"
            for e in range(tensor.shape[0]):
                if m.group(2) == "down_proj":
                    out[f"{prefix}.{e}.down_proj.weight"] = tensor[e]
                else:
                    gate, up = tensor[e].chunk(2, dim=0)
                    out[f"{prefix}.{e}.gate_proj.weight"] = gate
                    out[f"{prefix}.{e}.up_proj.weight"] = up
            continue
        out[f"model.{name}"] = tensor
    return out


def from_hf_state(hf_state: dict[str, torch.Tensor], cfg: ModelConfig, expected: dict[str, torch.Size],
                  folder: str) -> dict[str, torch.Tensor]:
    """transformers' names -> ours, checked against ``expected`` (our names -> shapes); errors name tensors.

    Accepts both per-expert tensors (Hub layout) and transformers 5's fused ``experts.gate_up_proj``.
    """
    import torch

    state: dict[str, torch.Tensor] = {}
    experts: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    unexpected = []
    for name, tensor in hf_state.items():
        if "rotary_emb" in name:
            continue
        key = name.removeprefix("model.")
        m = re.fullmatch(r"(layers\.\d+\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight", key)
        if m:
            experts.setdefault((m.group(1), int(m.group(2))), {})[m.group(3)] = tensor
            continue
        if key in expected:
            state[key] = tensor
        else:
            unexpected.append(name)
    by_layer: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for (prefix, e), parts in experts.items():
        by_layer.setdefault(prefix, {})[e] = parts
    for prefix, per_expert in by_layer.items():
        if f"{prefix}.gate_up_proj" not in expected:
            unexpected.append(f"model.{prefix}.*")
            continue
        n = expected[f"{prefix}.gate_up_proj"][0]
        missing = [f"model.{prefix}.{e}.{p}.weight" for e in range(n) for p in ("gate_proj", "up_proj", "down_proj")
                   if p not in per_expert.get(e, {})]
        if missing:
            raise CheckpointError(f"{folder}: checkpoint lacks {missing[0]} (config.json num_experts {n}; "
                                  f"{len(missing)} expert tensors missing)")
        if len(per_expert) > n:
            raise CheckpointError(f"{folder}: checkpoint has {len(per_expert)} experts in model.{prefix}, "
                                  f"config.json num_experts says {n}")
        _check_shape(folder, f"model.{prefix}.0.gate_proj.weight", per_expert[0]["gate_proj"],
                     expected[f"{prefix}.gate_up_proj"][1:], half=True)
        state[f"{prefix}.gate_up_proj"] = torch.stack(
            [torch.cat([per_expert[e]["gate_proj"], per_expert[e]["up_proj"]], dim=0) for e in range(n)])
        state[f"{prefix}.down_proj"] = torch.stack([per_expert[e]["down_proj"] for e in range(n)])
    if unexpected:
        raise CheckpointError(f"{folder}: checkpoint tensors that config.json's architecture does not have: "
                              f"{sorted(unexpected)[:5]}{' ...' if len(unexpected) > 5 else ''} "
                              "(wrong architectures/num_hidden_layers, or a feature codekiln lacks)")
    if cfg.tie_embeddings:
        state.pop("lm_head.weight", None)  # transformers ignores a stored head when tied
        state["lm_head.weight"] = state.get("embed_tokens.weight")
    for key, shape in expected.items():
        if key not in state or state[key] is None:
            hint = " (an untied model needs it: set tie_word_embeddings true if the head is shared)" \
                if key == "lm_head.weight" else ""
            raise CheckpointError(f"{folder}: checkpoint lacks model.{key}{hint}".replace("model.lm_head", "lm_head"))
        _check_shape(folder, key if key.startswith("lm_head") else f"model.{key}", state[key], shape)
    return state


def _check_shape(folder: str, name: str, tensor: torch.Tensor, shape, half: bool = False) -> None:
    want = list(shape)
    if half:
        want[0] //= 2
    if list(tensor.shape) != want:
        raise CheckpointError(f"{folder}: {name} has shape {list(tensor.shape)}, config.json implies {want} "
                              "(hidden_size / intermediate_size / num_attention_heads / num_key_value_heads / "
                              "head_dim / vocab_size disagree with the weights)")


class StateDictAdapter:
    """Ours <-> transformers' tensor names for one family (torchtitan's adapter interface)."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg

    def to_hf(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return to_hf_state(state, self.cfg)

    def from_hf(self, hf_state: dict[str, torch.Tensor], expected: dict[str, torch.Size],
                folder: str = "checkpoint") -> dict[str, torch.Tensor]:
        return from_hf_state(hf_state, self.cfg, expected, folder)


class FamilySpec:
    """A family: which ``architectures`` it reads, its config translators, adapter and builder."""

    def __init__(self, name: str, architectures: dict[str, str], from_hf, to_hf, adapter=StateDictAdapter,
                 build=None) -> None:
        self.name, self.architectures = name, architectures  # architecture -> family name (ModelConfig.family)
        self.from_hf, self.to_hf, self.adapter = from_hf, to_hf, adapter
        self._build = build

    def build(self, cfg: ModelConfig):
        if self._build is not None:
            return self._build(cfg)
        from codekiln.workloads.model.transformer import Transformer

        return Transformer(cfg)


def lazy_spec(package: str, name: str, architectures: dict[str, str], adapter: str):
    """A family package's module ``__getattr__`` that builds its ``SPEC`` on first use, so that importing the
    family's torch-free ``config`` module does not import its model.

    Args:
        package: the family package (``__name__`` of its ``__init__``), holding ``config`` (``from_hf``,
            ``to_hf``), ``model`` (``build``) and ``state_dict_adapter``.
        name: the family's name.
        architectures: the ``architectures`` entries it reads, each to its ``ModelConfig.family``.
        adapter: the adapter class's name in ``state_dict_adapter``.
    """

    def __getattr__(attr: str):
        if attr != "SPEC":
            raise AttributeError(attr)
        config, model, adapters = (importlib.import_module(f"{package}.{m}")
                                   for m in ("config", "model", "state_dict_adapter"))
        spec = FamilySpec(name, architectures, config.from_hf, config.to_hf, getattr(adapters, adapter), model.build)
        sys.modules[package].SPEC = spec
        return spec

    return __getattr__
