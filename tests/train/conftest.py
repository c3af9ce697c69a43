"""Fixtures: a real-corpus packed dataset (CPython stdlib, BPE trained here) and config builders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from codekiln.workloads.data.packed import write_meta, write_shard
from codekiln.workloads.special_tokens import EOT, SPECIAL_TOKENS

STDLIB = Path(os.__file__).parent


def build_packed_corpus(folder: Path, *, seq_len: int = 64, vocab_size: int = 512, n_files: int = 40,
                        shard_sequences: int = 200) -> Path:
    """Train a byte-level BPE on stdlib files, tokenize them (one document each + EOT), pack, write shards."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    files = sorted(STDLIB.glob("*.py"))[:n_files]
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    eot = tok.token_to_id(EOT)
    ids, starts = [], []
    for enc in tok.encode_batch(texts, add_special_tokens=False):
        starts.append(len(ids))
        ids += enc.ids + [eot]
    usable = len(ids) // seq_len * seq_len
    tokens, doc_starts = np.asarray(ids[:usable], dtype=np.uint32), np.asarray([s for s in starts if s < usable])
    folder.mkdir(parents=True, exist_ok=True)
    shards, per = [], shard_sequences * seq_len
    for i, lo in enumerate(range(0, usable, per)):
        hi = min(usable, lo + per)
        local = doc_starts[(doc_starts >= lo) & (doc_starts < hi)] - lo
        shards.append(write_shard(folder, f"shard-{i:05d}", tokens[lo:hi], local, seq_len))
    tok.save(str(folder / "tokenizer.json"))
    write_meta(folder, seq_len, shards)
    return folder


@pytest.fixture(scope="session")
def packed_corpus(tmp_path_factory) -> Path:
    return build_packed_corpus(tmp_path_factory.mktemp("corpus") / "packed")


@pytest.fixture(scope="session")
def make_resource():
    return train_resource


def train_resource(data_path: Path, out: Path, nprocPerNode: int | None = None, **training) -> dict:  # noqa: N803
    """A PretrainRun resource (wire form) for a tiny model on ``data_path`` (nprocPerNode: at spec level)."""
    spec = {
        "model": {"preset": "tiny"},
        "data": {"path": str(data_path), "evalSequences": 8},
        "stages": [{"name": "s1", "steps": 4, "lr": 3e-3, "seqLen": 32}],
        "microBatchSize": 2,
        "outputDir": str(out),
        "checkpoint": {"everySteps": 2, "keepLast": 2},
        "logEverySteps": 1,
        **training,
    }
    outer = {} if nprocPerNode is None else {"nprocPerNode": nprocPerNode}
    return {"apiVersion": "codekiln.dev/v1alpha1", "kind": "PretrainRun", "metadata": {"name": "t"},
            "spec": {**outer, "training": spec}}
