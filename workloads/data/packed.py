"""The packed token format shared by the data pipeline (writer) and pretraining (reader).

A packed dataset is a folder::

    meta.json                      {"format": "codekiln-packed-v1", "seq_len": L, "dtype": "uint32",
                                    "shards": [{"tokens": ..., "doc_starts": ..., "num_sequences": N}, ...]}
    shard-00000.tokens.bin         N*L token ids (little-endian, dtype from meta), sequence-major
    shard-00000.docstarts.bin      int64, sorted offsets (within the shard's token array) where a document starts
    tokenizer.json                 (optional) the tokenizer that produced the ids

Position 0 of every sequence is also a document boundary for the reader (a document
continued from the previous sequence restarts its positions there). numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codekiln.workloads.atomic_io import atomic_write_bytes

FORMAT = "codekiln-packed-v1"


def write_shard(folder: Path, shard_name: str, tokens: np.ndarray, doc_starts: np.ndarray, seq_len: int) -> dict:
    """Write one shard (``tokens`` length must be a multiple of ``seq_len``); returns its meta entry."""
    if tokens.size % seq_len:
        raise ValueError(f"{tokens.size} tokens is not a multiple of seq_len={seq_len}")
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "tokens": f"{shard_name}.tokens.bin",
        "doc_starts": f"{shard_name}.docstarts.bin",
        "num_sequences": int(tokens.size // seq_len),
    }
    atomic_write_bytes(folder / entry["tokens"], np.ascontiguousarray(tokens, dtype="<u4").tobytes())
    atomic_write_bytes(folder / entry["doc_starts"], np.ascontiguousarray(doc_starts, dtype="<i8").tobytes())
    return entry


def write_meta(folder: Path, seq_len: int, shards: Iterable[dict], **extra: object) -> None:
    """Write ``meta.json`` last, atomically: a folder without it is not a dataset yet."""
    meta = {"format": FORMAT, "seq_len": seq_len, "dtype": "uint32", "shards": list(shards), **extra}
    atomic_write_bytes(folder / "meta.json", json.dumps(meta, indent=2).encode())


@dataclass
class PackedSequence:
    tokens: np.ndarray  # [L] int64
    document_ids: np.ndarray  # [L] int64, 0.. within the sequence
    position_ids: np.ndarray  # [L] int64, restart at 0 at every document start


class PackedReader:
    """Memory-mapped random access to the sequences of a packed dataset."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: not a packed dataset (or still being written)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {self.meta.get('format')!r} is not {FORMAT}")
        self.seq_len = int(self.meta["seq_len"])
        self._tokens = [np.memmap(self.folder / s["tokens"], dtype="<u4", mode="r") for s in self.meta["shards"]]
        self._starts = [np.fromfile(self.folder / s["doc_starts"], dtype="<i8") for s in self.meta["shards"]]
        counts = [int(s["num_sequences"]) for s in self.meta["shards"]]
        self._cum = np.cumsum([0, *counts])

    def __len__(self) -> int:
        return int(self._cum[-1])

    @property
    def num_tokens(self) -> int:
        return len(self) * self.seq_len

    def __getitem__(self, index: int) -> PackedSequence:
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = int(np.searchsorted(self._cum, index, side="right") - 1)
        local = index - int(self._cum[shard])
        lo, hi = local * self.seq_len, (local + 1) * self.seq_len
        tokens = np.asarray(self._tokens[shard][lo:hi], dtype=np.int64)
        starts = self._starts[shard]
        inside = starts[np.searchsorted(starts, lo, side="left") : np.searchsorted(starts, hi, side="left")] - lo
        is_start = np.zeros(self.seq_len, dtype=bool)
        is_start[0] = True
        is_start[inside] = True
        document_ids = np.cumsum(is_start) - 1
        first = np.flatnonzero(is_start)
        position_ids = np.arange(self.seq_len) - first[document_ids]
        return PackedSequence(tokens, document_ids.astype(np.int64), position_ids.astype(np.int64))
