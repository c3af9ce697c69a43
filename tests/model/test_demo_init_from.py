"""``make demo INIT_FROM=DIR`` / ``codekiln run --local --init-from DIR``: the chain continues from a Hugging Face
folder. The end-to-end case builds a random-init Llama with transformers (nothing downloaded), runs a
DataPipeline + PretrainRun chain from it in a real ``codekiln`` process, and checks the data was packed with the
folder's tokenizer and the run started from the folder's weights (a 1-step run at lr 1e-12 exports them back)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codekiln.operator.init_from import init_from_overrides
from codekiln.operator.validation import validate_paths

ROOT = Path(__file__).resolve().parents[2]


def _docs(*paths: Path) -> list[dict]:
    results = validate_paths(list(paths))
    assert all(r.ok for r in results), [r.errors for r in results]
    return [r.wire() for r in results]


def _hf_folder(folder: Path, tokenizer: bool = True) -> Path:
    """A folder with config.json and a minimal tokenizer.json (what --init-from looks at; no weights)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"vocab_size": 8}))
    if tokenizer:
        vocab = {"<|endoftext|>": 0, "<|pad|>": 1, "a": 2}
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab}}))
    return folder


def test_the_demo_chain_continues_from_the_folder(tmp_path):
    folder = _hf_folder(tmp_path / "qwen")
    docs, notes = init_from_overrides(_docs(ROOT / "examples"), folder)
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert by_name["PretrainRun", "pretrainrun-demo"]["spec"]["training"]["initFrom"] == str(folder)
    stages = by_name["DataPipeline", "datapipeline-demo"]["spec"]["pipeline"]["stages"]
    assert "tokenizer" not in [s["name"] for s in stages]  # its BPE training would be unused
    packs = [step["pack"] for s in stages for step in s.get("steps") or [] if "pack" in step]
    assert packs and all(p["tokenizer"] == str(folder / "tokenizer.json") for p in packs)
    rl = by_name["RLRun", "rlrun-from-pretrain"]["spec"]["rl"]
    assert rl["warmStart"]["initCheckpoint"] == "runs/pretrainrun-demo/hf"  # the export, continuing the folder
    assert "initCheckpoint" not in by_name["RLRun", "rlrun-demo"]["spec"]["rl"].get("warmStart", {})  # from scratch
    assert any("pretrainrun-demo" in n for n in notes)


def test_an_rl_run_alone_warm_starts_from_the_folder(tmp_path):
    folder = _hf_folder(tmp_path / "llama")
    (doc,), _ = init_from_overrides(_docs(ROOT / "examples" / "rlrun-from-pretrain"), folder)
    assert doc["spec"]["rl"]["warmStart"]["initCheckpoint"] == str(folder)


def test_unusable_folders_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--init-from .*no config.json"):
        init_from_overrides(_docs(ROOT / "examples" / "pretrainrun.yaml"), tmp_path)
    bare = _hf_folder(tmp_path / "bare", tokenizer=False)
    with pytest.raises(ValueError, match="--init-from .*no tokenizer.json.*datapipeline-demo"):
        init_from_overrides(_docs(ROOT / "examples" / "datapipeline.yaml"), bare)


def _qwen_like_tokenizer(folder: Path, vocab_size: int) -> tuple[object, int]:
    """A byte-level BPE with Qwen's special tokens (<|endoftext|>, FIM, chat; no <|pad|>) and config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"]
    tok.train_from_iterator(["def f(x):\n    return x + 1\n"] * 50,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=specials, min_frequency=1))
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps({"vocab_size": vocab_size}))
    return tok, tok.get_vocab_size(with_added_tokens=True)


def test_a_tokenizer_without_pad_gets_one_at_a_spare_id(tmp_path, monkeypatch):
    from tokenizers import Tokenizer

    monkeypatch.chdir(tmp_path)  # the example's outputDir (runs/...) is relative: the extended copy goes there
    tok, n = _qwen_like_tokenizer(tmp_path / "qwen", vocab_size=10_000)  # padded embedding, as Qwen2.5's 151936
    docs, notes = init_from_overrides(_docs(ROOT / "examples" / "datapipeline.yaml"), tmp_path / "qwen")
    stages = docs[0]["spec"]["pipeline"]["stages"]
    (path,) = {step["pack"]["tokenizer"] for s in stages for step in s.get("steps") or [] if "pack" in step}
    assert path == str(tmp_path / "runs" / "datapipeline-demo" / "tokenizer-init-from.json")
    assert any("<|pad|> added as id" in n for n in notes)
    extended = Tokenizer.from_file(path)
    assert extended.token_to_id("<|pad|>") == n
    text = "def g(y):\n    return y + 2<|endoftext|>"
    assert extended.encode(text).ids == tok.encode(text).ids  # every other id is the model's

    _qwen_like_tokenizer(tmp_path / "full", vocab_size=n)  # no spare embedding row
    with pytest.raises(ValueError, match="--init-from .*no <\\|pad\\|> token .*no spare embedding row"):
        init_from_overrides(_docs(ROOT / "examples" / "datapipeline.yaml"), tmp_path / "full")
    (tmp_path / "full" / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"<|begin_of_text|>": 0}}}))
    with pytest.raises(ValueError, match="--init-from .*no <\\|endoftext\\|> token"):
        init_from_overrides(_docs(ROOT / "examples" / "datapipeline.yaml"), tmp_path / "full")


def _tokenizer(texts: list[str], path: Path) -> int:
    from codekiln.workloads.data.tokenizer import save_tokenizer, train_bpe

    tok = train_bpe(texts, vocab_size=320, min_frequency=1)
    save_tokenizer(tok, path)
    return tok.get_vocab_size(with_added_tokens=True)


def test_make_demo_init_from_passes_the_folder():
    out = subprocess.run(["make", "-n", "demo", "INIT_FROM=/models/Qwen2.5-Coder-0.5B"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert 'codekiln run --local -f examples/ --init-from "/models/Qwen2.5-Coder-0.5B"' in out


def test_local_run_continues_from_a_transformers_folder(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    src = tmp_path / "src"
    src.mkdir()
    texts = [f"def f{i}(x):\n    y = x * {i} + {i * i}\n    return [y for _ in range({i % 7 + 2})]\n" * 6
             for i in range(40)]
    for i, text in enumerate(texts):
        (src / f"m{i}.py").write_text(text)
    folder = tmp_path / "model"
    folder.mkdir()
    vocab = _tokenizer(texts, folder / "tokenizer.json")
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        "llama", vocab_size=vocab, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False)
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(10)  # logits far from 0: a model that did not start from the folder differs clearly
    model.save_pretrained(folder)

    runs = tmp_path / "runs"
    pipeline = {"apiVersion": "codekiln.dev/v1alpha1", "kind": "DataPipeline", "metadata": {"name": "dp"},
                "spec": {"pipeline": {"outputDir": str(runs / "dp"), "stages": [
                    {"name": "ingest", "steps": [{"readFiles": {"paths": [str(src)], "languages": ["python"]}}]},
                    {"name": "tokenizer", "input": "ingest", "steps": [{"trainTokenizer": {"vocabSize": 300}}]},
                    {"name": "pack", "input": "ingest", "steps": [{"pack": {"seqLen": 64, "output": "packed"}}]},
                ]}}}
    pretrain = {"apiVersion": "codekiln.dev/v1alpha1", "kind": "PretrainRun", "metadata": {"name": "pt"},
                "spec": {"after": [{"kind": "DataPipeline", "name": "dp"}], "training": {
                    "model": {"preset": "tiny", "vocabSize": "auto"},
                    "data": {"path": str(runs / "dp" / "packed")},
                    "microBatchSize": 2, "logEverySteps": 1, "outputDir": str(runs / "pt"),
                    "stages": [{"name": "s", "steps": 1, "seqLen": 64, "lr": 1e-12, "fimRate": 0.0}]}}}
    (tmp_path / "chain.yaml").write_text(yaml.safe_dump_all([pipeline, pretrain]))
    proc = subprocess.run([sys.executable, "-m", "codekiln.operator.cli", "run", "--local", "-f",
                           str(tmp_path / "chain.yaml"), "--init-from", str(folder)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "--init-from: PretrainRun 'pt': starts from" in proc.stderr

    # the data was packed with the folder's tokenizer; the pipeline's own tokenizer was never trained
    assert (runs / "dp" / "packed" / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    assert not (runs / "dp" / "tokenizer").exists()
    # the run continued from the folder: its shape, and (1 step at lr 1e-12) its weights
    export = runs / "pt" / "hf"
    assert json.loads((export / "config.json").read_text())["hidden_size"] == 48  # preset tiny would be 64
    after = transformers.AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32)
    ids = torch.randint(0, vocab, (2, 40))
    with torch.no_grad():
        want, got = model(ids).logits, after(ids).logits
    assert want.abs().max() > 1.0
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    records = [json.loads(line) for line in (runs / "pt" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1]
