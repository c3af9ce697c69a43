"""Byte-level BPE tokenizer training (``tokenizers``) with codekiln's special tokens at ids 0..8."""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Iterator
from pathlib import Path

from codekiln.workloads.atomic_io import atomic_path
from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.special_tokens import SPECIAL_TOKENS


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Train a byte-level BPE; special tokens take ids ``0..len(SPECIAL_TOKENS)-1`` in their fixed order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(s) != i:
            raise RuntimeError(f"special token {s} got id {tok.token_to_id(s)}, expected {i}")
    return tok


def save_tokenizer(tok, path: Path) -> None:
    """Save ``tokenizer.json`` atomically."""
    with atomic_path(path) as tmp:
        tok.save(str(tmp))


def load_tokenizer(path: str | Path):
    from tokenizers import Tokenizer

    if not Path(path).exists():
        raise FileNotFoundError(f"tokenizer {path} not found (run the train_tokenizer stage first)")
    return Tokenizer.from_file(str(path))


class TrainTokenizer(Step):
    """Sink: train on the stage's documents (up to ``max_chars``) and write ``output``; run with shards: 1."""

    name = "train_tokenizer"
    requires = ("tokenizers",)

    Params = step_params.TrainTokenizerParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        if world_size != 1:
            raise ValueError("train_tokenizer must run in a stage with shards: 1")
        sample = reservoir_sample(docs, self.params.sample_docs)
        texts, budget = [], self.params.max_chars
        for d in sample:  # sorted by id: the result does not depend on how the input was sharded
            if budget > 0:
                texts.append(d.text)
                budget -= len(d.text)
        tok = train_bpe(texts, self.params.vocab_size, self.params.min_frequency)
        save_tokenizer(tok, self.ctx.resolve(self.params.output))
        return iter(())


def _id_hash(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def reservoir_sample(docs: Iterable[Document], size: int) -> list[Document]:
    """The ``size`` documents with the smallest id hashes (bottom-k: uniform, order- and shard-independent),
    sorted by id; holds at most ``size`` documents.

    Args:
        docs: the stream.
        size: how many to keep.
    """
    heap: list[tuple[int, str, Document]] = []  # max-heap on the hash (negated)
    for d in docs:
        key = _id_hash(d.id)
        if len(heap) < size:
            heapq.heappush(heap, (-key, d.id, d))
        elif key < -heap[0][0]:
            heapq.heapreplace(heap, (-key, d.id, d))
    return sorted((d for _, _, d in heap), key=lambda d: d.id)
