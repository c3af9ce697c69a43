"""Tokenise and pack documents into fixed-length sequences (``packed.py`` format) with document boundaries.

Each document becomes its tokens + ``<|endoftext|>``; documents are concatenated
and cut into ``seq_len`` sequences (a document may continue into the next one);
the tail is padded with ``<|pad|>`` (recorded as its own document, so no real
token is lost or merged). Every shard writes ``shard-NNNNN.*`` into ``output``
and an entry file; whichever shard sees all entries writes ``meta.json`` (same
content from any shard, atomic), plus a copy of the tokenizer.

``fim.mode: context`` applies FIM per packed context (each document piece that
falls into one context is split at the character level and re-encoded; growth
carries over into the next context).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator

import numpy as np

from codekiln.workloads.atomic_io import atomic_path, atomic_write_text
from codekiln.workloads.data import packed, step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.fim import apply_fim, doc_rng
from codekiln.workloads.data.tokenizer import load_tokenizer
from codekiln.workloads.special_tokens import EOT, PAD

ContextFimParams = step_params.ContextFimParams


class PackStep(Step):
    """Sink: tokenise, pack to ``seq_len`` and write a packed shard."""

    name = "pack"
    requires = ("tokenizers",)

    Params = step_params.PackParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        tok = load_tokenizer(self.ctx.resolve(self.params.tokenizer))
        eot, pad = tok.token_to_id(EOT), tok.token_to_id(PAD)
        missing = [t for t, i in ((EOT, eot), (PAD, pad)) if i is None]
        if missing:  # a token id is never made up: it would be a real token of this tokenizer
            raise ValueError(f"pack.tokenizer {self.params.tokenizer}: no {' or '.join(missing)} token (packing ends "
                             f"documents with {EOT} and pads the last sequence with {PAD}); add them as special tokens")
        pieces: list[np.ndarray] = []
        batch: list[Document] = []

        def flush() -> None:
            for d, enc in zip(batch, tok.encode_batch([d.text for d in batch]), strict=True):
                ids = np.asarray(enc.ids, dtype=np.uint32)
                pieces.append(np.append(ids, np.uint32(eot)))
                self._ids.append(d.id)
            batch.clear()

        self._ids: list[str] = []
        for d in docs:
            batch.append(d)
            if len(batch) >= self.params.batch_docs:
                flush()
        flush()
        if self.params.fim.mode == "context":
            pieces = self._context_fim(pieces, tok, eot)
        tokens, starts = pack_pieces(pieces, self.params.seq_len, pad)
        folder = self.ctx.resolve(self.params.output)
        for stale in folder.glob(f".{self.ctx.shard_name()}.*.tmp-*"):  # left by a killed attempt of this shard
            stale.unlink(missing_ok=True)
        entry = packed.write_shard(folder, self.ctx.shard_name(), tokens, starts, self.params.seq_len)
        entry["documents"] = len(pieces)
        entry["real_tokens"] = int(sum(p.size for p in pieces))
        atomic_write_text(folder / "_entries" / f"{self.ctx.shard_name()}.json", json.dumps(entry))
        self._maybe_finish(folder, world_size)
        return iter(())

    def _context_fim(self, pieces: list[np.ndarray], tok, eot: int) -> list[np.ndarray]:
        """Cut the stream at context boundaries, FIM each document piece, re-encode."""
        seq, out, used = self.params.seq_len, [], 0
        rng = doc_rng(self.params.fim.seed, f"{self.ctx.stage}/{self.ctx.rank}")
        for p in pieces:
            body = p[:-1]
            while body.size:
                room = max(seq - used % seq, 1)
                cut = _char_boundary(tok, body, room)
                part, body = body[:cut], body[cut:]
                text = tok.decode(part.tolist(), skip_special_tokens=False)
                text = apply_fim(text, rng, self.params.fim.rate, self.params.fim.spm_rate)
                ids = np.asarray(tok.encode(text).ids, dtype=np.uint32)
                if not body.size:
                    ids = np.append(ids, np.uint32(eot))
                out.append(ids)
                used += ids.size
        return out

    def _maybe_finish(self, folder, world_size: int) -> None:
        entries = [folder / "_entries" / f"shard-{r:05d}.json" for r in range(world_size)]
        if not all(e.exists() for e in entries):
            return
        shards = [json.loads(e.read_text()) for e in entries]
        tok_src = self.ctx.resolve(self.params.tokenizer)
        with atomic_path(folder / "tokenizer.json") as tmp:
            shutil.copyfile(tok_src, tmp)
        packed.write_meta(
            folder,
            self.params.seq_len,
            shards,
            documents=sum(s["documents"] for s in shards),
            real_tokens=sum(s["real_tokens"] for s in shards),
        )


def _char_boundary(tok, ids: np.ndarray, cut: int, window: int = 4) -> int:
    """``cut``, moved a few tokens (back first) when it would split a character.

    Byte-level BPE tokens are bytes: a cut inside a UTF-8 sequence would decode both halves to
    U+FFFD and lose the character. A cut is clean when decoding the two sides separately gives
    the same text as decoding across it (checked on ``window`` tokens each side, enough for any
    4-byte character). Falls back to ``cut`` when no clean boundary is near.
    """
    if cut >= ids.size:
        return int(ids.size)

    def text(a: int, b: int) -> str:
        return tok.decode(ids[max(a, 0) : b].tolist(), skip_special_tokens=False)

    # back first (the piece still fits its context), then forward (it spills a few tokens over)
    for c in [*range(cut, max(cut - window, 0), -1), *range(cut + 1, min(cut + window, int(ids.size)) + 1)]:
        if text(c - window, c) + text(c, c + window) == text(c - window, c + window):
            return c
    return cut


def pack_pieces(pieces: list[np.ndarray], seq_len: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``pieces`` (each a document incl. EOT), pad the tail; returns (tokens, doc_starts)."""
    lengths = np.array([p.size for p in pieces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if pieces else np.empty(0, np.int64)
    stream = np.concatenate(pieces) if pieces else np.empty(0, np.uint32)
    tail = (-stream.size) % seq_len
    if tail:
        starts = np.append(starts, stream.size)
        stream = np.concatenate([stream, np.full(tail, pad_id, dtype=np.uint32)])
    return stream.astype(np.uint32), starts.astype(np.int64)
