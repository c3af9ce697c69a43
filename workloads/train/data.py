"""Training samples from packed shards: per-stage windows, FIM, a checkpointable sampler.

Everything random is a pure function of ``(seed, epoch, sample index)``, so the only
state to checkpoint is the sampler's ``(epoch, cursor)`` and a resumed run sees exactly
the batches the uninterrupted one would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from codekiln.workloads.data.packed import PackedReader, PackedSequence

IGNORE_INDEX = -100


@dataclass(frozen=True)
class FimTokens:
    """Sentinel ids used by the FIM transform."""

    prefix: int
    suffix: int
    middle: int
    eot: int


def _segments(document_ids: np.ndarray) -> list[tuple[int, int]]:
    starts = np.flatnonzero(np.r_[True, document_ids[1:] != document_ids[:-1]])
    ends = np.r_[starts[1:], document_ids.size]
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def positions_from_documents(document_ids: np.ndarray) -> np.ndarray:
    """Position ids restarting at 0 at each document start."""
    idx = np.arange(document_ids.size)
    starts = np.r_[True, document_ids[1:] != document_ids[:-1]]
    first = np.maximum.accumulate(np.where(starts, idx, 0))
    return idx - first


class PackedSamples:
    """Fixed-length samples of ``seq_len`` tokens cut from (or joined across) packed sequences.

    ``seq_len`` must divide the data's sequence length or be a multiple of it; the
    last ``eval_sequences`` packed sequences are excluded (``split="train"``) or the
    only ones used (``split="eval"``).
    """

    def __init__(self, reader: PackedReader, seq_len: int, eval_sequences: int = 0, split: str = "train") -> None:
        data_len = reader.seq_len
        if data_len % seq_len and seq_len % data_len:
            raise ValueError(
                f"stage seqLen {seq_len} must divide the packed data's seq_len {data_len} or be a multiple of it"
            )
        if eval_sequences >= len(reader) and split == "train":
            raise ValueError(f"data.evalSequences ({eval_sequences}) leaves no training data ({len(reader)} sequences)")
        self.reader, self.seq_len = reader, seq_len
        lo, hi = (0, len(reader) - eval_sequences) if split == "train" else (len(reader) - eval_sequences, len(reader))
        self.lo, self.n_seq = lo, hi - lo
        self.per_seq = max(1, data_len // seq_len)  # windows per packed sequence
        self.join = max(1, seq_len // data_len)  # packed sequences per sample

    def __len__(self) -> int:
        return self.n_seq * self.per_seq if self.join == 1 else self.n_seq // self.join

    def __getitem__(self, index: int) -> PackedSequence:
        if self.join == 1:
            seq = self.reader[self.lo + index // self.per_seq]
            off = (index % self.per_seq) * self.seq_len
            tokens = seq.tokens[off : off + self.seq_len]
            doc = seq.document_ids[off : off + self.seq_len]
            doc = doc - doc[0]
        else:
            parts = [self.reader[self.lo + index * self.join + j] for j in range(self.join)]
            tokens = np.concatenate([p.tokens for p in parts])
            offsets = np.cumsum([0] + [int(p.document_ids[-1]) + 1 for p in parts[:-1]])
            doc = np.concatenate([p.document_ids + o for p, o in zip(parts, offsets, strict=True)])
        return PackedSequence(tokens, doc, positions_from_documents(doc))


def fim_transform(
    sample: PackedSequence, rng: np.random.Generator, rate: float, mode: str, ids: FimTokens
) -> PackedSequence:
    """Turn each document into FIM form with probability ``rate`` (context-level, after packing).

    The split points are uniform over token positions of the document body (its
    trailing EOT kept at the end); SPM is ``<SUF> suffix <PRE> prefix <MID> middle``,
    PSM is ``<PRE> prefix <SUF> suffix <MID> middle``. Output is cut back to the
    input length.
    """
    out_tokens, out_docs = [], []
    for d, (s, e) in enumerate(_segments(sample.document_ids)):
        toks = sample.tokens[s:e]
        if rate > 0 and e - s >= 4 and rng.random() < rate:
            tail = toks[-1:] if toks[-1] == ids.eot else toks[:0]
            body = toks[: toks.size - tail.size]
            a, b = np.sort(rng.integers(0, body.size + 1, size=2))
            pre, mid, suf = body[:a], body[a:b], body[b:]
            if mode == "spm":
                parts = [[ids.suffix], suf, [ids.prefix], pre, [ids.middle], mid, tail]
            else:
                parts = [[ids.prefix], pre, [ids.suffix], suf, [ids.middle], mid, tail]
            toks = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
        out_tokens.append(toks)
        out_docs.append(np.full(toks.size, d, dtype=np.int64))
    n = sample.tokens.size
    tokens, docs = np.concatenate(out_tokens)[:n], np.concatenate(out_docs)[:n]
    return PackedSequence(tokens, docs, positions_from_documents(docs))


def shift_labels(tokens: np.ndarray, document_ids: np.ndarray, loss_mask: np.ndarray | None = None) -> np.ndarray:
    """Next-token labels; IGNORE_INDEX across document boundaries, at the end and where the mask is off.

    ``loss_mask[t]`` says whether token ``t`` is a training target.
    """
    labels = np.full(tokens.size, IGNORE_INDEX, dtype=np.int64)
    labels[:-1] = tokens[1:]
    labels[:-1][document_ids[1:] != document_ids[:-1]] = IGNORE_INDEX
    if loss_mask is not None:
        labels[:-1][~loss_mask[1:]] = IGNORE_INDEX
    return labels


class Sampler:
    """Deterministic shuffled order over ``n`` samples, epoch after epoch; state = (epoch, cursor)."""

    def __init__(self, n: int, seed: int) -> None:
        if n <= 0:
            raise ValueError("no training samples")
        self.n, self.seed = n, seed
        self.epoch, self.cursor = 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def take(self, count: int) -> list[tuple[int, int]]:
        """The next ``count`` (epoch, sample index) pairs."""
        out = []
        for _ in range(count):
            if self.cursor == self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._perm = self._permutation()
            out.append((self.epoch, int(self._perm[self.cursor])))
            self.cursor += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "n": self.n, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state["n"] != self.n or state["seed"] != self.seed:
            raise ValueError(f"sampler state is for n={state['n']}, seed={state['seed']}; have n={self.n}")
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._perm = self._permutation()


def collate(samples: list[PackedSequence], loss_masks: list[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Stack samples into a batch: input_ids, labels, position_ids, document_ids [B, T]."""
    masks = loss_masks or [None] * len(samples)
    return {
        "input_ids": torch.from_numpy(np.stack([s.tokens for s in samples]).astype(np.int64)),
        "labels": torch.from_numpy(
            np.stack([shift_labels(s.tokens, s.document_ids, m) for s, m in zip(samples, masks, strict=True)])
        ),
        "position_ids": torch.from_numpy(np.stack([s.position_ids for s in samples]).astype(np.int64)),
        "document_ids": torch.from_numpy(np.stack([s.document_ids for s in samples]).astype(np.int64)),
    }


def unigram_logprobs(
    reader: PackedReader, n_sequences: int, vocab_size: int, ignore_id: int | None = None
) -> np.ndarray:
    """Add-one smoothed unigram log-probabilities from the first ``n_sequences`` (the training split).

    The baseline a language model must beat: its cross-entropy on held-out tokens.
    """
    counts = np.ones(vocab_size, dtype=np.float64)
    for i in range(n_sequences):
        counts += np.bincount(reader[i].tokens, minlength=vocab_size)[:vocab_size]
    if ignore_id is not None:
        counts[ignore_id] = 1.0
    return np.log(counts / counts.sum())
