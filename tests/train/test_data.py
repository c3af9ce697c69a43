"""Training data: stage windows over packed shards, FIM, labels, the checkpointable sampler."""

from __future__ import annotations

import numpy as np
import pytest

from codekiln.workloads.data.packed import PackedReader, PackedSequence
from codekiln.workloads.train.data import (
    IGNORE_INDEX,
    FimTokens,
    PackedSamples,
    Sampler,
    collate,
    fim_transform,
    shift_labels,
)

FIM = FimTokens(prefix=2, suffix=3, middle=4, eot=0)


def test_stage_windows_split_and_join_packed_sequences(packed_corpus):
    reader = PackedReader(packed_corpus)
    assert reader.seq_len == 64
    half, double = PackedSamples(reader, 32, eval_sequences=8), PackedSamples(reader, 128, eval_sequences=8)
    train_n = len(reader) - 8
    assert len(half) == 2 * train_n and len(double) == train_n // 2
    np.testing.assert_array_equal(half[3].tokens, reader[1].tokens[32:])
    joined = double[1]
    np.testing.assert_array_equal(joined.tokens, np.concatenate([reader[2].tokens, reader[3].tokens]))
    assert joined.document_ids[64] == joined.document_ids[63] + 1  # the boundary starts a new document
    assert joined.position_ids[64] == 0
    held_out = PackedSamples(reader, 64, eval_sequences=8, split="eval")
    np.testing.assert_array_equal(held_out[0].tokens, reader[len(reader) - 8].tokens)
    with pytest.raises(ValueError, match="seqLen 48"):
        PackedSamples(reader, 48)


def test_fim_spm_rearranges_each_document_and_keeps_length():
    tokens = np.array([10, 11, 12, 13, 14, 15, 0, 20, 21, 22, 23, 0], dtype=np.int64)
    docs = np.array([0] * 7 + [1] * 5)
    sample = PackedSequence(tokens, docs, np.r_[np.arange(7), np.arange(5)])
    out = fim_transform(sample, np.random.default_rng(0), 1.0, "spm", FIM)
    assert out.tokens.size == tokens.size
    first = out.tokens[out.document_ids == 0]
    assert first[0] == FIM.suffix and FIM.prefix in first and FIM.middle in first and first[-1] == 0
    # SPM: <SUF> suffix <PRE> prefix <MID> middle <EOT>; rebuilding prefix+middle+suffix gives the document
    p, m = list(first).index(FIM.prefix), list(first).index(FIM.middle)
    suffix, prefix, middle = first[1:p], first[p + 1 : m], first[m + 1 : -1]
    np.testing.assert_array_equal(np.concatenate([prefix, middle, suffix]), tokens[:6])
    np.testing.assert_array_equal(out.position_ids[: first.size], np.arange(first.size))
    untouched = fim_transform(sample, np.random.default_rng(0), 0.0, "spm", FIM)
    np.testing.assert_array_equal(untouched.tokens, tokens)


def test_labels_never_cross_documents_and_respect_the_loss_mask():
    tokens = np.array([5, 6, 7, 8, 9])
    docs = np.array([0, 0, 1, 1, 1])
    np.testing.assert_array_equal(shift_labels(tokens, docs), [6, IGNORE_INDEX, 8, 9, IGNORE_INDEX])
    mask = np.array([False, False, False, True, False])
    np.testing.assert_array_equal(shift_labels(tokens, docs, mask), [IGNORE_INDEX, IGNORE_INDEX, 8, IGNORE_INDEX,
                                                                     IGNORE_INDEX])
    batch = collate([PackedSequence(tokens, docs, np.array([0, 1, 0, 1, 2]))])
    assert batch["input_ids"].shape == batch["labels"].shape == (1, 5)


def test_sampler_is_deterministic_covers_each_epoch_and_resumes():
    a = Sampler(10, seed=3)
    first = a.take(25)
    assert sorted(i for e, i in first if e == 0) == list(range(10))
    assert {e for e, _ in first} == {0, 1, 2}
    b = Sampler(10, seed=3)
    b.take(13)
    state = b.state_dict()
    c = Sampler(10, seed=3)
    c.load_state_dict(state)
    assert c.take(12) == first[13:]
    assert Sampler(10, seed=4).take(10) != first[:10]
    with pytest.raises(ValueError, match="sampler state"):
        Sampler(11, seed=3).load_state_dict(state)


def test_special_ids_come_from_the_tokenizer_and_are_never_made_up(tmp_path):
    from tokenizers import Tokenizer, models

    from codekiln.workloads.special_tokens import EOT, PAD, SPECIAL_TOKENS
    from codekiln.workloads.train.trainer import _special_ids

    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, EOT: 7}, unk_token="a"))
    tok.add_special_tokens([EOT])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    ids = _special_ids(path)
    assert ids == {EOT: 7}  # no <|pad|> or FIM ids: positions 1, 2… are real tokens of this tokenizer ("b")
    assert PAD not in ids
    assert _special_ids(None) == {t: i for i, t in enumerate(SPECIAL_TOKENS)}
