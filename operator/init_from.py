"""``codekiln run --local --init-from FOLDER`` (``make demo INIT_FROM=FOLDER``): continue a local chain from a
Hugging Face model folder — a codekiln export or an open checkpoint (Llama, Qwen2/2.5(-Coder), Qwen3, their MoE).

The chain's resources are rewritten before they run, through the settings they already have:

- every PretrainRun starts from FOLDER: ``spec.training.initFrom`` (the folder's shape and weights replace
  ``spec.training.model``; kernels/attention stay);
- every DataPipeline that packs tokens packs them with FOLDER's ``tokenizer.json`` (``pack.tokenizer``), so the
  token ids are the model's (``<|pad|>`` added at a spare id when the tokenizer lacks it, see
  :func:`pack_tokenizer`); stages that only train a tokenizer nobody else reads are left out;
- RLRuns that warm-start from a checkpoint (``spec.rl.warmStart.initCheckpoint``) start from FOLDER when no
  PretrainRun is part of the run; with one, they keep reading its export (``spec.after``), which now
  continues FOLDER.

Torch-free (the operator package never imports torch): only config.json and tokenizer.json are looked at here;
the workloads load and check the weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from codekiln.operator.validation import ValidationResult, check_related, validate_document
from codekiln.workloads.special_tokens import EOT, PAD

FLAG = "--init-from"
PACK_TOKENIZER = "tokenizer-init-from.json"  # written into the DataPipeline's outputDir when <|pad|> is added


def _vocab_size(config: dict[str, Any]) -> int | None:
    size = config.get("vocab_size", (config.get("text_config") or {}).get("vocab_size"))
    return int(size) if size is not None else None


def pack_tokenizer(folder: Path, out_dir: Path) -> tuple[Path, str | None]:
    """The tokenizer.json a DataPipeline packs with for ``folder``'s model, and a note when it differs.

    Packing ends every document with ``<|endoftext|>`` and pads the last sequence with ``<|pad|>``; the
    PretrainRun never trains on ``<|pad|>``. A folder whose tokenizer lacks ``<|pad|>`` (Qwen2.5, Qwen3) gets a
    copy with it added as a special token at the first free id, written to ``out_dir``, if the model has a
    spare embedding row for it (their vocab_size is padded); otherwise a ``ValueError`` names what is missing.

    Args:
        folder: the model folder (config.json, tokenizer.json).
        out_dir: where an extended copy goes (the DataPipeline's outputDir).
    """
    path = folder / "tokenizer.json"
    try:
        tok = json.loads(path.read_text())
        vocab = tok["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{FLAG} {folder}: tokenizer.json is not a tokenizers JSON file ({exc})") from None
    added = {t["content"]: t["id"] for t in tok.get("added_tokens") or []}
    known = {**(vocab if isinstance(vocab, dict) else {}), **added}
    if EOT not in known:
        raise ValueError(f"{FLAG} {folder}: tokenizer.json has no {EOT} token, which packing puts after every "
                         "document (Qwen2.5/Qwen3 tokenizers have it; for another tokenizer pack the data yourself "
                         "and point the PretrainRun's initFrom at the folder)")
    if PAD in known:
        return path, None
    new_id = max(known.values(), default=-1) + 1
    try:
        size = _vocab_size(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{FLAG} {folder}: config.json is not JSON ({exc})") from None
    if size is None or new_id >= size:
        raise ValueError(f"{FLAG} {folder}: tokenizer.json has no {PAD} token for padding packed sequences and the "
                         f"model has no spare embedding row for one (vocab_size {size}, tokenizer ids up to "
                         f"{new_id - 1})")
    tok.setdefault("added_tokens", []).append({"id": new_id, "content": PAD, "single_word": False, "lstrip": False,
                                               "rstrip": False, "normalized": False, "special": True})
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / PACK_TOKENIZER
    out.write_text(json.dumps(tok, ensure_ascii=False))
    return out, f"{PAD} added as id {new_id} (a spare row of the model's {size}) in {out}"


def _steps(stage: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [step[name] for step in stage.get("steps") or [] if name in step]


def init_from_overrides(docs: list[dict[str, Any]], folder: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The resources (camelCase dicts, as ``ValidationResult.wire()`` gives them) rewritten to continue from
    ``folder``, and one note per change. Raises ``ValueError`` naming the flag for an unusable folder.

    Args:
        docs: the run's resources.
        folder: a Hugging Face model folder (config.json, safetensors, tokenizer.json).
    """
    path = Path(folder).expanduser().resolve()
    if not (path / "config.json").is_file():
        raise ValueError(f"{FLAG} {folder}: no config.json there (give a Hugging Face model folder, e.g. a "
                         "PretrainRun's export or a downloaded Qwen2.5-Coder / Llama checkpoint)")
    tokenizer = path / "tokenizer.json"
    docs = copy.deepcopy(docs)
    notes: list[str] = []
    has_pretrain = any(d.get("kind") == "PretrainRun" for d in docs)
    for doc in docs:
        kind, name, spec = doc.get("kind"), doc.get("metadata", {}).get("name"), doc.get("spec", {})
        if kind == "PretrainRun":
            spec["training"]["initFrom"] = str(path)
            notes.append(f"PretrainRun {name!r}: starts from {path} (spec.training.initFrom)")
        elif kind == "DataPipeline":
            stages = spec["pipeline"]["stages"]
            packs = [p for stage in stages for p in _steps(stage, "pack")]
            if not packs:
                continue
            if not tokenizer.is_file():
                raise ValueError(f"{FLAG} {folder}: no tokenizer.json there, but DataPipeline {name!r} packs tokens "
                                 "that must be the model's (a PretrainRun export and Hub checkpoints carry one)")
            pack_with, added = pack_tokenizer(path, Path(spec["pipeline"]["outputDir"]).resolve())
            for pack in packs:
                pack["tokenizer"] = str(pack_with)
            read = {stage.get("input") for stage in stages}
            dropped = [s["name"] for s in stages if s.get("steps") and s["name"] not in read
                       and all(set(step) == {"trainTokenizer"} for step in s["steps"])]
            spec["pipeline"]["stages"] = [s for s in stages if s["name"] not in dropped]
            notes.append(f"DataPipeline {name!r}: packs with {pack_with}"
                         + (f" (stage {', '.join(map(repr, dropped))} left out)" if dropped else "")
                         + (f"; {added}" if added else ""))
        elif kind == "RLRun":
            warm = spec.get("rl", {}).get("warmStart") or {}
            if not warm.get("initCheckpoint"):
                continue
            if has_pretrain:
                notes.append(f"RLRun {name!r}: keeps warmStart.initCheckpoint {warm['initCheckpoint']} "
                             "(the PretrainRun's export, which continues from the folder)")
            else:
                warm["initCheckpoint"] = str(path)  # the folder's shape replaces spec.rl.model
                notes.append(f"RLRun {name!r}: starts from {path} (spec.rl.warmStart.initCheckpoint)")
    return docs, notes


def apply_init_from(results: list[ValidationResult], folder: str | Path) -> tuple[list[ValidationResult], list[str]]:
    """Validated resources rewritten by :func:`init_from_overrides` and validated again (with the cross-resource
    checks); the notes say what changed.

    Args:
        results: valid resources of the run.
        folder: the ``--init-from`` folder.
    """
    docs, notes = init_from_overrides([r.wire() for r in results], folder)
    out = []
    for doc, before in zip(docs, results, strict=True):
        result = validate_document(doc)
        result.source = f"{before.source} ({FLAG})"
        out.append(result)
    check_related(out)
    return out, notes
