"""Whole-RL-state checkpoints: policy, optimiser, sampler, curriculum, stage, metrics, RNG."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from codekiln.workloads.atomic_io import atomic_path

CHECKPOINT_NAME = "rl_state.pt"


def save_state(path: str | Path, state: dict) -> Path:
    """Write ``state`` atomically (temp file + os.replace) and return the final path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    state["rng"] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_state(path: str | Path) -> dict | None:
    """The saved state, or None when there is no checkpoint; restores the RNG states."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a corrupt file must be reported with its path
        hint = "delete it or set checkpoint.resume false"
        raise RuntimeError(f"checkpoint {path} could not be read ({exc}); {hint}") from None
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    return state
