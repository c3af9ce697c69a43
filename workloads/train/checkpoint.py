"""Checkpoint folders: written atomically, a ``latest`` pointer, keep-last-K.

Layout::

    <dir>/step-00000100/      model/optimizer (engine-specific files) + trainer.json
    <dir>/latest              "step-00000100"

A checkpoint is first written to ``<dir>/.tmp-step-…`` by every rank, then renamed by
rank 0 after a barrier; ``latest`` is replaced last. A crash mid-write leaves the
previous checkpoint current.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch.distributed as dist

from codekiln.workloads.atomic_io import atomic_write_text

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def save_checkpoint(root: Path, step: int, write: Callable[[Path], None], trainer_state: dict, rank: int,
                    keep_last: int) -> Path:
    """Write checkpoint ``step`` with ``write(folder)`` on every rank; publish it on rank 0."""
    name = f"step-{step:08d}"
    final, tmp = root / name, root / f".tmp-{name}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    _barrier()
    write(tmp)
    _barrier()
    if rank == 0:
        (tmp / "trainer.json").write_text(json.dumps(trainer_state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / "latest", name)
        for old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Published checkpoint folders, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def latest_checkpoint(root: Path) -> Path | None:
    """The folder named by ``latest`` (or the newest step folder), if any."""
    pointer = root / "latest"
    if pointer.exists():
        path = root / pointer.read_text().strip()
        if path.is_dir():
            return path
    found = list_checkpoints(root)
    return found[-1] if found else None


def read_trainer_state(folder: Path) -> dict:
    return json.loads((folder / "trainer.json").read_text())
