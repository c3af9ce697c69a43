"""Atomic file writes: a uniquely named temp file beside the target, fsync, then ``os.replace``.

Temp names are hidden (``.NAME.tmp-<random>``) so globs over a folder never see them, and
unique per call, so concurrent writers of the same path (two shards finishing together, pods
with the same PID on a shared volume) never clobber each other's temp file.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_path(path: Path, keep_suffix: bool = False) -> Path:
    """A fresh temp path next to ``path``; ``keep_suffix`` for writers that infer the format from it."""
    suffix = path.suffix if keep_suffix else ""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:16]}{suffix}")


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsynced before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
