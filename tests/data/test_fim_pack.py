"""Tokenizer special tokens, FIM round trips, and packing that loses no token."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codekiln.workloads.data.base import StageContext
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.fim import apply_fim, fim_format, restore
from codekiln.workloads.data.packed import PackedReader
from codekiln.workloads.data.registry import build_step
from codekiln.workloads.data.tokenizer import save_tokenizer, train_bpe
from codekiln.workloads.special_tokens import EOT, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, PAD, SPECIAL_TOKENS

from .conftest import STDLIB


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [
        p.read_text(encoding="utf-8")
        for p in sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))[:12]
    ]


@pytest.fixture(scope="module")
def tokenizer(texts: list[str], tmp_path_factory: pytest.TempPathFactory):
    tok = train_bpe(texts, vocab_size=600)
    path = tmp_path_factory.mktemp("tok") / "tokenizer" / "tokenizer.json"
    save_tokenizer(tok, path)
    return tok, path


def test_special_tokens_have_fixed_ids_and_stay_atomic(tokenizer) -> None:
    tok, _ = tokenizer
    assert [tok.token_to_id(s) for s in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    ids = tok.encode(fim_format("def f(", "x", "):\n", spm=True)).ids
    assert ids[0] == SPECIAL_TOKENS.index(FIM_SUFFIX) and SPECIAL_TOKENS.index(FIM_MIDDLE) in ids


def test_fim_round_trip_on_stdlib(texts: list[str]) -> None:
    rng = random.Random(0)
    modes = set()
    for text in texts:
        for _ in range(5):
            sample = apply_fim(text, rng, rate=1.0, spm_rate=0.5)
            modes.add(sample[: len(FIM_PREFIX)] == FIM_PREFIX)
            assert restore(sample) == text
            assert len(sample) == len(text) + len(FIM_PREFIX) + len(FIM_SUFFIX) + len(FIM_MIDDLE)
    assert modes == {True, False}  # both PSM and SPM occur


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_characters="<|>"), max_size=200), st.integers(0, 2**32), st.floats(0, 1)
)
def test_fim_round_trip_any_text(text: str, seed: int, spm_rate: float) -> None:
    assert restore(apply_fim(text, random.Random(seed), 1.0, spm_rate)) == text


def test_fim_rate_and_spm_mix() -> None:
    rng = random.Random(1)
    out = [apply_fim("abcdefghij" * 5, rng, rate=0.3, spm_rate=0.8) for _ in range(4000)]
    fim = [s for s in out if s.startswith((FIM_PREFIX, FIM_SUFFIX))]
    assert abs(len(fim) / len(out) - 0.3) < 0.03
    assert abs(sum(s.startswith(FIM_SUFFIX) for s in fim) / len(fim) - 0.8) < 0.04


def _pack(tmp_path: Path, tok_path: Path, docs: list[Document], seq_len: int, **fim) -> PackedReader:
    ctx = StageContext(tmp_path, "pack")
    params = {"tokenizer": str(tok_path), "seqLen": seq_len, "output": "packed", "batchDocs": 7}
    if fim:
        params["fim"] = fim
    step = build_step("pack", params, ctx)
    assert list(step(iter(docs), 0, 1)) == []
    return PackedReader(tmp_path / "packed")


def test_packing_loses_no_token(tmp_path: Path, tokenizer, texts: list[str]) -> None:
    tok, path = tokenizer
    docs = [Document(str(i), t) for i, t in enumerate(texts)]
    reader = _pack(tmp_path, path, docs, seq_len=256)
    eot, pad = SPECIAL_TOKENS.index(EOT), SPECIAL_TOKENS.index(PAD)
    expected = np.concatenate([np.array([*tok.encode(t).ids, eot]) for t in texts])
    stream = np.concatenate([reader[i].tokens for i in range(len(reader))])
    assert stream.size % 256 == 0 and stream.size - expected.size < 256
    assert np.array_equal(stream[: expected.size], expected) and np.all(stream[expected.size :] == pad)
    assert reader.meta["real_tokens"] == expected.size and reader.meta["documents"] == len(texts)
    # document boundaries: each doc's first token starts a document in the reader's view
    starts = np.cumsum([0] + [len(tok.encode(t).ids) + 1 for t in texts[:-1]])
    seq = starts // 256
    for s, q in zip(starts, seq, strict=True):
        item = reader[int(q)]
        assert item.position_ids[s % 256] == 0
    assert tok.decode(stream[: expected.size].tolist(), skip_special_tokens=False).split(EOT)[:-1] == texts
    assert (tmp_path / "packed" / "tokenizer.json").exists()


def test_context_level_fim(tmp_path: Path, tokenizer, texts: list[str]) -> None:
    _, path = tokenizer
    docs = [Document(str(i), t) for i, t in enumerate(texts)]
    reader = _pack(tmp_path, path, docs, seq_len=128, mode="context", rate=1.0, spmRate=0.5)
    stream = np.concatenate([reader[i].tokens for i in range(len(reader))])
    pre, suf = SPECIAL_TOKENS.index(FIM_PREFIX), SPECIAL_TOKENS.index(FIM_SUFFIX)
    contexts = len(reader)
    assert (stream == pre).sum() >= contexts * 0.9 and (stream == suf).sum() >= contexts * 0.9
    assert reader.meta["documents"] > len(texts)  # every context piece is its own FIM sample


def test_context_cuts_never_split_a_multibyte_character(tmp_path: Path, tokenizer) -> None:
    # the tokenizer never saw these characters: each is 2-4 single-byte tokens, so blind cuts split them
    _, path = tokenizer
    rng = random.Random(3)
    alphabet = ["é", "ß", "注", "释", "🐍", "λ", "→", "x", " ", "\n", "def f():", "  return 'ü'\n"]
    texts = ["".join(rng.choice(alphabet) for _ in range(400)) for _ in range(6)]
    docs = [Document(str(i), t) for i, t in enumerate(texts)]
    reader = _pack(tmp_path, path, docs, seq_len=64, mode="context", rate=0.0)
    tok = PackedReader(tmp_path / "packed")
    stream = np.concatenate([tok[i].tokens for i in range(len(tok))])[: reader.meta["real_tokens"]]
    from codekiln.workloads.data.tokenizer import load_tokenizer

    decoded = load_tokenizer(path).decode(stream.tolist(), skip_special_tokens=False)
    assert "\ufffd" not in decoded
    assert decoded.split(EOT)[:-1] == texts  # rate 0: context cutting alone is lossless


def test_pack_removes_temp_files_left_by_a_killed_attempt(tmp_path: Path, tokenizer, texts: list[str]) -> None:
    _, path = tokenizer
    stale = tmp_path / "packed" / ".shard-00000.tokens.bin.tmp-0123456789abcdef"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half-written")
    reader = _pack(tmp_path, path, [Document("0", texts[0])], seq_len=64)
    assert not stale.exists() and len(reader) > 0
    assert not [p.name for p in (tmp_path / "packed").iterdir() if ".tmp-" in p.name]


def test_tokenizer_reservoir_is_bounded_uniform_and_order_free() -> None:
    import random

    from codekiln.workloads.data.document import Document
    from codekiln.workloads.data.tokenizer import reservoir_sample

    docs = [Document(f"doc-{i}", f"text {i}") for i in range(5000)]
    a = reservoir_sample(iter(docs), 300)
    shuffled = docs[:]
    random.Random(1).shuffle(shuffled)
    b = reservoir_sample(iter(shuffled), 300)
    assert [d.id for d in a] == [d.id for d in b] and len(a) == 300
    assert a == sorted(a, key=lambda d: d.id)
    idx = sorted(int(d.id.split("-")[1]) for d in a)
    assert idx[0] < 500 and idx[-1] > 4500  # spread over the stream, not its head
    assert len(reservoir_sample(iter(docs[:10]), 300)) == 10


def test_pack_refuses_a_tokenizer_without_pad_instead_of_making_up_an_id(tmp_path: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {chr(c): i for i, c in enumerate(range(32, 127))} | {EOT: 95}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=" "))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.add_special_tokens([EOT])
    path = tmp_path / "no-pad.json"
    tok.save(str(path))
    with pytest.raises(ValueError, match=r"pack.tokenizer .*no <\|pad\|> token"):
        _pack(tmp_path, path, [Document("0", texts[0])], seq_len=64)
