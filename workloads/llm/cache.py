"""Response cache on the run's storage: one JSON file per request, keyed by the request's hash.

The key covers the endpoint path and the whole body (model, messages/prompt, temperature,
max_tokens, seed, stop), so a resumed run asks only for what it has not been answered yet.
Files are written atomically (temp + rename), so concurrent shards and crashes never leave a
half-written entry; an unreadable entry counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from codekiln.workloads.atomic_io import atomic_write_text


class ResponseCache:
    """``get(key)`` / ``put(key, value)`` over ``folder/<key[:2]>/<key>.json``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    @staticmethod
    def key(path: str, body: dict) -> str:
        """SHA-256 of the canonical JSON of (path, body)."""
        blob = json.dumps({"path": path, "body": body}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            value = json.loads(self._file(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) and isinstance(value.get("text"), str) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        file = self._file(key)
        file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(file, json.dumps(value, ensure_ascii=False))

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.json")) if self.folder.exists() else 0
