"""Hugging Face folders in and out: one entry point for every family.

``load_hf(folder)`` picks the family from config.json ``architectures`` (Llama, Qwen2, Qwen3,
Qwen2-MoE, Qwen3-MoE), reads both config layouts (transformers 4's ``rope_theta`` +
``rope_scaling``, transformers 5's ``rope_parameters``), single or sharded safetensors (with
``model.safetensors.index.json``) in fp32/bf16/fp16, tied or untied heads, and refuses what it
cannot load exactly with a ``CheckpointError`` naming the field or tensor.

``export_hf(model, cfg, folder, tokenizer)`` writes what transformers and vLLM load unchanged:
the family's config.json, safetensors (sharded above ``max_shard_bytes``, with an index),
generation_config.json, tokenizer.json, tokenizer_config.json (bos/eos/pad and the ChatML chat
template of ``train/sft.py``) and special_tokens_map.json — atomically (temp folder renamed).
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
from codekiln.workloads.model.family import CheckpointError, FamilySpec
from codekiln.workloads.model.llama import SPEC as LLAMA
from codekiln.workloads.model.qwen2 import SPEC as QWEN2
from codekiln.workloads.model.qwen3 import SPEC as QWEN3
from codekiln.workloads.model.qwen_moe import SPEC as QWEN_MOE
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.special_tokens import EOT, IM_END, IM_START, PAD

__all__ = ["CheckpointError", "chat_template", "export_hf", "hf_config", "load_hf", "load_hf_to_continue",
           "read_hf_config", "spec_for_family"]

SPECS: tuple[FamilySpec, ...] = (LLAMA, QWEN2, QWEN3, QWEN_MOE)
ARCHITECTURES: dict[str, FamilySpec] = {arch: spec for spec in SPECS for arch in spec.architectures}
RUNTIME_KNOBS = ("kernels", "attention", "activation_checkpointing")
# codekiln-only options (no config.json field) restored from ``codekiln_model`` of our own exports
_CODEKILN_ONLY = ("norm_head", "kernels", "attention", "activation_checkpointing")
_CODEKILN_ONLY_MOE = ("z_loss_coef", "capacity_factor", "balancing", "bias_update_speed")
DEFAULT_MAX_SHARD_BYTES = 4 * 2**30
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def spec_for_family(family: str) -> FamilySpec:
    """The FamilySpec that exports ``ModelConfig.family``."""
    for spec in SPECS:
        if family in spec.architectures.values():
            return spec
    raise ValueError(f"model.family {family!r} has no exporter")


# ---------------------------------------------------------------------- config
def read_hf_config(folder: str | Path) -> tuple[ModelConfig, FamilySpec]:
    """The folder's config.json as (ModelConfig, family); errors name the field."""
    folder = Path(folder)
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{folder}: no config.json (not a Hugging Face model folder)")
    try:
        hf = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    archs = hf.get("architectures") or []
    if not archs:
        raise CheckpointError(f"{path}: no 'architectures' field (which model class is this?)")
    spec = ARCHITECTURES.get(archs[0])
    if spec is None:
        raise CheckpointError(f"{path}: architectures {archs[0]!r} is not supported; codekiln loads "
                              f"{sorted(ARCHITECTURES)}")
    cfg = spec.from_hf(hf, str(folder))
    ours = hf.get("codekiln_model")
    if isinstance(ours, dict):  # our own export: restore options config.json cannot express
        update = {k: ours[_camel(k)] for k in _CODEKILN_ONLY if _camel(k) in ours}
        if cfg.moe is not None and isinstance(ours.get("moe"), dict):
            moe = {k: ours["moe"][_camel(k)] for k in _CODEKILN_ONLY_MOE if _camel(k) in ours["moe"]}
            update["moe"] = cfg.moe.model_copy(update=moe)
        cfg = cfg.model_copy(update=update)
    return cfg, spec


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def hf_config(cfg: ModelConfig, token_ids: dict[str, int | None] | None = None, dtype: str = "float32") -> dict:
    """The ``config.json`` of ``cfg``'s family (plus ``codekiln_model`` for options it cannot hold).

    ``token_ids`` may hold bos/eos/pad ids; an int there is taken as the eos id (old API).
    """
    if isinstance(token_ids, int):
        token_ids = {"eos": token_ids, "bos": token_ids}
    out = spec_for_family(cfg.family).to_hf(cfg)
    out["torch_dtype"] = dtype
    out["dtype"] = dtype
    for key in ("bos", "eos", "pad"):
        if token_ids and token_ids.get(key) is not None:
            out[f"{key}_token_id"] = token_ids[key]
    out["codekiln_model"] = cfg.to_wire()
    return out


# ---------------------------------------------------------------------- weights
def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a folder (one file, or the shards its index names)."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index ({exc})") from None
        files = [folder / name for name in dict.fromkeys(weight_map.values())]
        missing = [str(f.name) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index}: names shards that are not in the folder: {missing}")
        return files
    if single.is_file():
        return [single]
    hint = " (pytorch_model.bin is not read: convert it to safetensors)" if (folder / "pytorch_model.bin").exists() \
        else ""
    raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors.index.json{hint}")


def read_state(folder: str | Path, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's safetensors, cast to ``dtype``."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(Path(folder)):
        for name, tensor in load_file(str(file)).items():
            if not tensor.is_floating_point():
                raise CheckpointError(f"{file}: tensor {name} has dtype {tensor.dtype} (quantised checkpoints are "
                                      "not supported)")
            state[name] = tensor.to(dtype)
    return state


def load_hf(folder: str | Path, dtype: torch.dtype = torch.float32,
            runtime: dict | None = None) -> tuple[Transformer, ModelConfig]:
    """Load a Llama/Qwen2/Qwen3/Qwen2-MoE/Qwen3-MoE folder (ours or the Hub's) into our Transformer.

    Args:
        folder: a Hugging Face model folder.
        dtype: parameter dtype of the returned model.
        runtime: overrides that do not change the weights (kernels, attention, activation_checkpointing).
    """
    folder = Path(folder)
    cfg, spec = read_hf_config(folder)
    if runtime:
        cfg = cfg.model_copy(update=runtime)
    with torch.device("meta"):
        shapes = spec.build(cfg)
    expected = {k: v.shape for k, v in shapes.state_dict().items() if not k.endswith(".expert_bias")}
    if cfg.tie_embeddings:
        expected["lm_head.weight"] = expected["embed_tokens.weight"]
    state = spec.adapter(cfg).from_hf(read_state(folder, dtype), expected, str(folder))
    model = spec.build(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(".expert_bias")]
    if missing or unexpected:  # the adapter checks names first; this is a safety net
        raise CheckpointError(f"{folder}: tensors missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    return model.to(dtype), cfg


def load_hf_to_continue(folder: str | Path, runtime: ModelConfig, field: str) -> Transformer:
    """A model to keep training from a folder: its shape and weights, ``runtime``'s kernels/attention.

    Args:
        folder: a Hugging Face model folder (a codekiln export or a Hub checkpoint).
        runtime: the run's model config; only its run-time knobs are used.
        field: names the setting in errors (e.g. ``warmStart.initCheckpoint``).
    """
    try:
        model, _ = load_hf(folder, runtime={k: getattr(runtime, k) for k in RUNTIME_KNOBS})
    except CheckpointError as exc:
        raise ValueError(f"{field} {exc}") from None
    return model


# ---------------------------------------------------------------------- export
def chat_template() -> str:
    """The Jinja chat template of ``train/sft.py``'s ChatML format (``<|im_start|>role\\ncontent<|im_end|>\\n``)."""
    return (
        "{%- for message in messages -%}"
        "{{- '" + IM_START + "' + message['role'] + '\\n' + message['content'] + '" + IM_END + "' + '\\n' -}}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + IM_START + "assistant\\n' -}}{%- endif -%}"
    )


def _token_ids(tokenizer_json: Path | None, chat: bool) -> dict[str, int | None]:
    if tokenizer_json is None:
        return {}
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    eot, pad, im_end = tok.token_to_id(EOT), tok.token_to_id(PAD), tok.token_to_id(IM_END)
    eos = im_end if chat and im_end is not None else eot
    return {"bos": eot, "eos": eos, "pad": pad if pad is not None else eot, "eot": eot, "im_end": im_end}


def _write_tokenizer(tmp: Path, tokenizer_json: Path, ids: dict, chat: bool, max_len: int) -> None:
    from tokenizers import Tokenizer

    shutil.copyfile(tokenizer_json, tmp / "tokenizer.json")
    tok = Tokenizer.from_file(str(tokenizer_json))
    names = {k: tok.id_to_token(ids[k]) for k in ("bos", "eos", "pad") if ids.get(k) is not None}
    added = {str(t.id if hasattr(t, "id") else i): {"content": t.content, "special": t.special, "lstrip": t.lstrip,
                                                   "rstrip": t.rstrip, "normalized": t.normalized,
                                                   "single_word": t.single_word}
             for i, t in tok.get_added_tokens_decoder().items()}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": names.get("bos"),
        "eos_token": names.get("eos"),
        "pad_token": names.get("pad"),
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "chat_template": chat_template(),
        "added_tokens_decoder": added,
        "codekiln_chat_format": "chatml" if chat else "chatml (base model: eos is end-of-text)",
    }
    (tmp / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {f"{k}_token": v for k, v in names.items()}
    extra = [t for t in (IM_START, IM_END) if tok.token_to_id(t) is not None]
    if extra:
        special["additional_special_tokens"] = extra
    (tmp / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """safetensors refuses tensors sharing storage (expert slices): copy views."""
    t = t.contiguous()
    if t.storage_offset() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()
    return t


def _write_weights(tmp: Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> None:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(tmp / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(tmp / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def export_hf(
    model: Transformer | dict[str, torch.Tensor],
    cfg: ModelConfig,
    folder: str | Path,
    tokenizer_json: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    *,
    chat: bool = False,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Write a Hugging Face folder of ``cfg.family`` atomically (a temp folder renamed into place).

    Args:
        model: the model or its (full, gathered) state dict, in our names.
        cfg: its config (the family decides config.json and tensor names).
        folder: destination; replaced if it exists.
        tokenizer_json: copied as ``tokenizer.json``; tokenizer_config.json / special_tokens_map.json are written
            from it (bos = pad fallback = end-of-text; eos = ``<|im_end|>`` when ``chat`` else end-of-text).
        dtype: tensor dtype in the safetensors files (config.json's ``torch_dtype``).
        chat: the model was chat-tuned (SFT, RL on chats): eos is the end of an assistant turn.
        max_shard_bytes: safetensors shard size; a larger model is split and indexed.
    """
    folder = Path(folder)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else model
    spec = spec_for_family(cfg.family)
    tensors = {k: _own_storage(v.detach().to("cpu", dtype)) for k, v in spec.adapter(cfg).to_hf(state).items()}
    tok_path = Path(tokenizer_json) if tokenizer_json is not None else None
    ids = _token_ids(tok_path, chat)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_weights(tmp, tensors, max_shard_bytes)
        dtype_name = str(dtype).removeprefix("torch.")
        (tmp / "config.json").write_text(json.dumps(hf_config(cfg, ids, dtype_name), indent=2))
        generation = {k: v for k, v in (("bos_token_id", ids.get("bos")), ("pad_token_id", ids.get("pad"))) if
                      v is not None}
        stops = [i for i in dict.fromkeys((ids.get("eos"), ids.get("eot"), ids.get("im_end"))) if i is not None]
        if stops:
            generation["eos_token_id"] = stops if len(stops) > 1 else stops[0]
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2))
        if tok_path is not None:
            _write_tokenizer(tmp, tok_path, ids, chat, cfg.max_seq_len)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def to_hf_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig | None = None) -> dict[str, torch.Tensor]:
    """Our names -> transformers' (``cfg`` default: a dense untied Llama)."""
    cfg = cfg or ModelConfig()
    return spec_for_family(cfg.family).adapter(cfg).to_hf(state)


def dtype_of(folder: str | Path) -> torch.dtype:
    """The folder's stored dtype (config.json ``torch_dtype``/``dtype``), fp32 when unknown."""
    hf = json.loads((Path(folder) / "config.json").read_text())
    return _DTYPES.get(str(hf.get("torch_dtype") or hf.get("dtype")), torch.float32)


def char_tokenizer_json(tokens: list[str], special: tuple[str, ...], path: str | Path) -> Path:
    """Write a ``tokenizer.json`` for a character-level vocabulary (``tokens[i]`` has id i; ``special`` are
    special tokens), so exports of char-tokenizer runs (the RL demo) load in transformers too."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pad = next((t for t in special if t == PAD), special[0])
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=pad))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(special))
    path = Path(path)
    tok.save(str(path))
    return path
