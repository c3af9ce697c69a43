"""The document that flows between data steps, and JSONL (de)serialisation."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codekiln.workloads.atomic_io import temp_path


@dataclass
class Document:
    """One unit of data: a file, a repository, a commit sample or a web page.

    ``metadata`` carries ``language``, ``path``, ``repo``, ``stars``, ``forks``,
    ``commits``, ``activity_days``, ``updated_ts`` when known. ``origin``
    (stage, shard, index) is set by ``read_stage`` and never serialised.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: tuple[str, int, int] | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "text": self.text, "metadata": self.metadata}, ensure_ascii=False)

    @classmethod
    def from_record(cls, record: Any, *, text_key: str = "text", id_key: str = "id", default_id: str = "") -> Document:
        """Build from a JSON object; raises ``ValueError`` naming the bad field."""
        if not isinstance(record, dict):
            raise ValueError(f"record is a {type(record).__name__}, not an object")
        text = record.get(text_key)
        if not isinstance(text, str):
            raise ValueError(f"field {text_key!r} is missing or not a string")
        doc_id = record.get(id_key, default_id)
        metadata = record.get("metadata", {})
        if not isinstance(metadata, dict):
            raise ValueError("field 'metadata' is not an object")
        extra = {k: v for k, v in record.items() if k not in (text_key, id_key, "metadata")}
        return cls(
            id=str(doc_id) if doc_id not in (None, "") else default_id, text=text, metadata={**extra, **metadata}
        )


def priority_key(doc: Document) -> tuple:
    """Which copy survives a dedup: most stars, then most recent, then smallest path."""
    meta = doc.metadata
    return (-float(meta.get("stars") or 0), -float(meta.get("updated_ts") or 0), str(meta.get("path") or doc.id))


class AtomicJsonlWriter:
    """Writes JSON lines to a hidden temp file and renames on ``close`` (``discard`` drops it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = temp_path(path)
        self._fh = open(self._tmp, "w", encoding="utf-8")  # noqa: SIM115
        self.count = 0

    def write_line(self, line: str) -> None:
        self._fh.write(line)
        self._fh.write("\n")
        self.count += 1

    def write(self, obj: Any) -> None:
        self.write_line(obj.to_json() if isinstance(obj, Document) else json.dumps(obj, ensure_ascii=False))

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


def write_jsonl(path: Path, items: Iterable[Any]) -> int:
    """Write all ``items`` atomically; returns the count."""
    writer = AtomicJsonlWriter(path)
    try:
        for item in items:
            writer.write(item)
    except BaseException:
        writer.discard()
        raise
    writer.close()
    return writer.count


def read_jsonl(path: Path) -> Iterator[Any]:
    """Yield parsed JSON lines (blank lines skipped)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


