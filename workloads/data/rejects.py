"""Audit trail: one compact record per dropped document, per shard, and ``explain`` to answer "why?".

Each shard of each stage writes ``<stage>/dropped/shard-NNNNN.jsonl.gz`` (gzip JSON lines,
renamed into place with the shard's outputs): ``{"id", "path", "stage", "step", "rule",
"value"}`` — the rule that fired and the value that tripped it (e.g. the comment fraction,
the syntax error's line). ``codekiln data explain RUN PATH`` reads them (torch-free).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codekiln.workloads.atomic_io import atomic_write_bytes

DROPPED_DIR = "dropped"


def _plain(value: Any) -> Any:
    """JSON-safe, short."""
    if value is None or isinstance(value, bool | int | str):
        return value if not isinstance(value, str) else value[:300]
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in list(value.items())[:10]}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value[:10]]
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return str(value)[:300]


class RejectsWriter:
    """Buffers drop records of one shard and writes them gzipped, atomically, on ``close``."""

    def __init__(self, path: Path | str, stage: str) -> None:
        self.path = path
        self.stage = stage
        self._z = zlib.compressobj(5, zlib.DEFLATED, 31)  # gzip container, compressed as it goes
        self._chunks: list[bytes] = []
        self.count = 0

    def write(self, doc_id: str, path: str | None, step: str, rule: str, value: Any = None) -> None:
        rec = {"id": doc_id, "path": path, "stage": self.stage, "step": step, "rule": rule, "value": _plain(value)}
        self._chunks.append(self._z.compress((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")))
        self.count += 1

    def close(self, write: Any = None) -> None:
        """Write the file (``write(path, bytes)`` overrides the local atomic writer, e.g. for object storage)."""
        data = b"".join(self._chunks) + self._z.flush()
        (write or atomic_write_bytes)(self.path, data)

    def discard(self) -> None:
        self._chunks = []


def iter_rejects(output_dir: Path | str) -> Iterator[dict]:
    """Every drop record under a run's output folder (stages in name order, shards in order)."""
    root = Path(output_dir)
    for f in sorted(root.glob(f"*/{DROPPED_DIR}/shard-*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def _matches(rec: dict, query: str) -> bool:
    q = query.rstrip("/")
    for field in (rec.get("path"), rec.get("id")):
        if not field:
            continue
        f = str(field)
        if f == q or f.endswith("/" + q) or q.endswith("/" + f):
            return True
    return False


def explain(output_dir: Path | str, query: str) -> list[dict]:
    """Drop records whose path or id is ``query`` (or ends with it as whole path components)."""
    return [r for r in iter_rejects(output_dir) if _matches(r, query)]


def kept_in(output_dir: Path | str, query: str) -> list[str]:
    """Stages whose output documents include ``query`` (by path or id)."""
    root = Path(output_dir)
    stages = []
    for f in sorted(root.glob("*/data/shard-*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                rec = json.loads(line)
                if _matches({"id": rec.get("id"), "path": (rec.get("metadata") or {}).get("path")}, query):
                    stages.append(f.parent.parent.name)
                    break
    return sorted(set(stages))


def resolve_run(run: str) -> Path:
    """A run's output folder: a path, or ``runs/<name>`` under the working directory."""
    p = Path(run)
    if p.is_dir():
        return p
    for cand in (Path("runs") / run,):
        if cand.is_dir():
            return cand
    raise ValueError(f"RUN {run!r}: no such folder (give a DataPipeline outputDir or a name under runs/)")


def explain_main(run: str, path: str) -> int:
    """``codekiln data explain RUN PATH``: print why ``path`` was dropped (0), kept (0), or unknown (1)."""
    root = resolve_run(run)
    hits = explain(root, path)
    for r in hits:
        value = "" if r.get("value") in (None, "") else f" (value: {json.dumps(r['value'], ensure_ascii=False)})"
        print(f"{r.get('path') or r['id']}: dropped in stage {r['stage']} by {r['step']}: {r['rule']}{value}")
    if hits:
        return 0
    stages = kept_in(root, path)
    if stages:
        print(f"{path}: not dropped; present in the output of {', '.join(stages)}")
        return 0
    print(f"{path}: not seen in {root} (no drop record and no stage output names it)")
    return 1
