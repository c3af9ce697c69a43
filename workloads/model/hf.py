"""Hugging Face Llama format: export (config.json + model.safetensors + tokenizer.json) and load.

Our parameter names are ``LlamaForCausalLM``'s without the ``model.`` prefix, so the
state-dict adapter is a prefix rule. The same folder is what vLLM serves.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.special_tokens import EOT

_TOP_LEVEL = ("lm_head.",)


def to_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> Hugging Face names (``model.`` prefix except the LM head)."""
    return {(k if k.startswith(_TOP_LEVEL) else f"model.{k}"): v for k, v in state.items()}


def from_hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face names -> ours."""
    return {k.removeprefix("model."): v for k, v in state.items() if "rotary_emb" not in k}


def hf_config(cfg: ModelConfig, eos_token_id: int | None = None, dtype: str = "float32") -> dict:
    """The ``config.json`` of a ``LlamaForCausalLM`` with ``cfg``'s shape."""
    out = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
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
        "rope_theta": cfg.rope_theta,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "codekiln_model": cfg.to_wire(),
    }
    if cfg.rope_scaling is not None:
        s = cfg.rope_scaling
        out["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        }
    if eos_token_id is not None:
        out["eos_token_id"] = eos_token_id
        out["bos_token_id"] = eos_token_id
    return out


def export_hf(
    model: Transformer | dict[str, torch.Tensor],
    cfg: ModelConfig,
    folder: str | Path,
    tokenizer_json: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write a Hugging Face Llama folder atomically (a temp folder renamed into place).

    Args:
        model: the model or its (full, gathered) state dict.
        cfg: its config.
        folder: destination; replaced if it exists.
        tokenizer_json: copied as ``tokenizer.json`` when given; its EOT id becomes eos.
        dtype: tensor dtype in the safetensors file.
    """
    folder = Path(folder)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in to_hf_state_dict(state).items()}
    eos = None
    if tokenizer_json is not None:
        from tokenizers import Tokenizer

        eos = Tokenizer.from_file(str(tokenizer_json)).token_to_id(EOT)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        dtype_name = str(dtype).removeprefix("torch.")
        (tmp / "config.json").write_text(json.dumps(hf_config(cfg, eos, dtype_name), indent=2))
        (tmp / "generation_config.json").write_text(json.dumps({"eos_token_id": eos} if eos is not None else {}))
        if tokenizer_json is not None:
            shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


RUNTIME_KNOBS = ("kernels", "attention", "activation_checkpointing")


def load_hf_to_continue(folder: str | Path, runtime: ModelConfig, field: str) -> Transformer:
    """A model to keep training from an export: its shape and weights, ``runtime``'s kernels/attention.

    ``field`` names the setting in errors (e.g. ``warmStart.initCheckpoint``).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise ValueError(f"{field} {folder}: a folder must hold a Hugging Face config.json and model.safetensors "
                         "(a PretrainRun's export)")
    model, _ = load_hf(folder, runtime={k: getattr(runtime, k) for k in RUNTIME_KNOBS})
    return model


def load_hf(folder: str | Path, dtype: torch.dtype = torch.float32,
            runtime: dict | None = None) -> tuple[Transformer, ModelConfig]:
    """Load an exported folder (ours or any Llama-shaped one) back into our Transformer.

    ``runtime`` overrides settings that do not change the weights (kernels, attention, ...).
    """
    folder = Path(folder)
    hf = json.loads((folder / "config.json").read_text())
    if "codekiln_model" in hf:
        cfg = ModelConfig.model_validate(hf["codekiln_model"])
    else:
        cfg = ModelConfig(
            vocab_size=hf["vocab_size"], dim=hf["hidden_size"], ffn_dim=hf["intermediate_size"],
            n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
            n_kv_heads=hf.get("num_key_value_heads", hf["num_attention_heads"]),
            rope_theta=hf.get("rope_theta", 10000.0), norm_eps=hf.get("rms_norm_eps", 1e-5),
            max_seq_len=hf.get("max_position_embeddings", 8192),
        )
    if runtime:
        cfg = cfg.model_copy(update=runtime)
    model = Transformer(cfg)
    model.load_state_dict(from_hf_state_dict(load_file(str(folder / "model.safetensors"))))
    return model.to(dtype), cfg
