"""``codekiln run --local --init-from FOLDER`` (``make demo INIT_FROM=FOLDER``): continue a local chain from a
Hugging Face model folder — a codekiln export or an open checkpoint (Llama, Qwen2/2.5(-Coder), Qwen3, their MoE).

The chain's resources are rewritten before they run, through the settings they already have:

- every PretrainRun starts from FOLDER: ``spec.training.initFrom`` (the folder's shape and weights replace
  ``spec.training.model``; kernels/attention stay);
- every DataPipeline that packs tokens packs them with FOLDER's ``tokenizer.json`` (``pack.tokenizer``), so the
  token ids are the model's; stages that only train a tokenizer nobody else reads are left out;
- RLRuns that warm-start from a checkpoint (``spec.rl.warmStart.initCheckpoint``) start from FOLDER when no
  PretrainRun is part of the run; with one, they keep reading its export (``spec.after``), which now
  continues FOLDER.

Torch-free (the operator package never imports torch): only config.json and tokenizer.json are looked at here;
the workloads load and check the weights.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from codekiln.operator.validation import ValidationResult, check_related, validate_document

FLAG = "--init-from"


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
            for pack in packs:
                pack["tokenizer"] = str(tokenizer)
            read = {stage.get("input") for stage in stages}
            dropped = [s["name"] for s in stages if s.get("steps") and s["name"] not in read
                       and all(set(step) == {"trainTokenizer"} for step in s["steps"])]
            spec["pipeline"]["stages"] = [s for s in stages if s["name"] not in dropped]
            notes.append(f"DataPipeline {name!r}: packs with {tokenizer}"
                         + (f" (stage {', '.join(map(repr, dropped))} left out)" if dropped else ""))
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
