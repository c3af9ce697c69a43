"""End-to-end runs on real code: 4 shards == 1 shard, kill + resume == clean run, malformed input, bad config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codekiln.workloads.data.document import read_jsonl
from codekiln.workloads.data.packed import PackedReader
from codekiln.workloads.data.registry import StepConfigError
from codekiln.workloads.data.runner import parse_pipeline, run_local, run_pipeline
from codekiln.workloads.special_tokens import PAD, SPECIAL_TOKENS

from .conftest import SITE_PACKAGES, STDLIB, pipeline_resource, stage

MH = {"numPerm": 64, "bands": 8, "rows": 8, "threshold": 0.7}


def corpus_paths() -> list[str]:
    """Real code with real duplicates: stdlib packages + two vendored copies of `packaging`."""
    paths = [STDLIB / "json", STDLIB / "email", STDLIB / "urllib", STDLIB / "wsgiref", STDLIB / "xml"]
    paths += [SITE_PACKAGES / "pip" / "_vendor" / "packaging", SITE_PACKAGES / "setuptools" / "_vendor" / "packaging"]
    return [str(p) for p in paths if p.is_dir()]


def demo_resource(out: Path, shards: int) -> dict:
    return pipeline_resource(
        out,
        [
            stage(
                "ingest",
                shards,
                ("read_files", {"paths": corpus_paths(), "languages": ["python"]}),
                "syntax_filter",
                ("heuristic_filter", {"default": {"minAlphaFraction": 0.3}}),
            ),
            stage("dedup", shards, input="ingest", dedup={"exact": {}, "near": {**MH, "bucketShards": shards}}),
            stage("tokenizer", 1, ("train_tokenizer", {"vocabSize": 1000}), input="dedup"),
            stage("pack", shards, ("fim", {"rate": 0.5, "spmRate": 0.5}), ("pack", {"seqLen": 512}), input="dedup"),
        ],
    )


def stage_docs(out: Path, name: str) -> list[tuple[str, str]]:
    return sorted((r["id"], r["text"]) for f in (out / name / "data").glob("shard-*.jsonl") for r in read_jsonl(f))


def packed_docs(out: Path) -> list[tuple[int, ...]]:
    """Every packed document's tokens (padding dropped), order-free."""
    reader = PackedReader(out / "packed")
    pad = SPECIAL_TOKENS.index(PAD)
    docs = []
    for shard, starts in zip(reader._tokens, reader._starts, strict=True):
        bounds = [*starts.tolist(), shard.size]
        docs += [tuple(shard[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return sorted(d for d in docs if d and d[0] != pad)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    out = {"one": base / "one", "four": base / "four"}
    run_pipeline(parse_pipeline(demo_resource(out["one"], 1)))
    run_pipeline(parse_pipeline(demo_resource(out["four"], 4)), processes=2)
    return out


def test_four_shards_equal_one_shard(runs: dict[str, Path]) -> None:
    one, four = runs["one"], runs["four"]
    for name in ("ingest", "dedup"):
        assert stage_docs(one, name) == stage_docs(four, name)
    assert (one / "tokenizer" / "tokenizer.json").read_text() == (four / "tokenizer" / "tokenizer.json").read_text()
    assert packed_docs(one) == packed_docs(four)
    stats = json.loads((four / "stats.json").read_text())
    dedup = {s["name"]: s for s in stats["dedup"]}
    assert dedup["exact_dedup_filter"]["rejects"].get("exact_duplicate_file", 0) > 0  # vendored copies
    ingest = {s["name"]: s for s in stats["ingest"]}
    assert ingest["read_files"]["docs_out"] == ingest["syntax_filter"]["docs_in"] > 100


def test_packed_output_is_readable_with_document_starts(runs: dict[str, Path]) -> None:
    reader = PackedReader(runs["four"] / "packed")
    assert reader.meta["documents"] == len(stage_docs(runs["four"], "dedup"))
    seq = reader[0]
    assert seq.tokens.shape == (512,) and seq.position_ids[0] == 0
    assert (reader.folder / "tokenizer.json").exists()


def _files(root: Path) -> dict[str, bytes]:
    skip = ("_markers", "stats.json", "stage_times.json", "rejects")
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(s in p.parts or p.name == s for s in skip)
    }


def test_killed_mid_stage_then_resumed_equals_clean_run(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "killed"
    resource = demo_resource(out, 4)
    script = (
        "import json, sys; from codekiln.workloads.data.runner import run_local; "
        "sys.exit(run_local(json.loads(sys.argv[1])))"
    )
    env = {**os.environ, "CODEKILN_DATA_PROCESSES": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(resource)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = out / "ingest" / "_markers" / "shard-00001.done"
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in (out / "ingest" / "_markers").glob("*.done"))
    assert "shard-00001.done" in done and len(done) < 4, f"killed mid-stage, done={done}"
    assert not (out / "ingest" / "data" / "shard-00003.jsonl").exists()  # no half-written outputs
    totals = run_pipeline(parse_pipeline(resource))
    assert _files(out) == _files(runs["four"])
    assert (
        totals["ingest"][0].docs_out == json.loads((runs["four"] / "stats.json").read_text())["ingest"][0]["docs_out"]
    )


def test_rerun_skips_finished_shards(runs: dict[str, Path]) -> None:
    before = _files(runs["one"])
    t0 = time.monotonic()
    run_pipeline(parse_pipeline(demo_resource(runs["one"], 1)))
    assert _files(runs["one"]) == before
    assert time.monotonic() - t0 < 30


def test_malformed_records_go_to_rejects_file(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "x = 1\n"}),
        "{not json",
        json.dumps({"id": "b"}),
        "[1, 2]",
        json.dumps({"id": "c", "text": "y = 2\n", "metadata": {"language": "python"}}),
    ]
    src.write_text("\n".join(lines) + "\n")
    resource = pipeline_resource(tmp_path / "out", [stage("read", 1, ("read_jsonl", {"paths": [str(src)]}))])
    assert run_local(resource) == 0
    kept = [r["id"] for r in read_jsonl(tmp_path / "out" / "read" / "data" / "shard-00000.jsonl")]
    rejects = list(read_jsonl(tmp_path / "out" / "read" / "rejects" / "shard-00000.jsonl"))
    assert kept == ["a", "c"]
    assert len(rejects) == 3 and {r["source"].rsplit(":", 1)[1] for r in rejects} == {"2", "3", "4"}
    assert "'text'" in rejects[1]["reason"]


def test_bad_step_params_name_the_field(tmp_path: Path) -> None:
    resource = pipeline_resource(tmp_path, [stage("s", 1, ("read_jsonl", {"paths": ["x"]}),
                                                  ("heuristic_filter", {"default": {"minChars": -1}}))])
    with pytest.raises(StepConfigError, match=r"spec\.pipeline\.stages\[0\]\.steps\[1\]\.heuristicFilter\.default"
                                              r"\.minChars: Input should be greater than or equal to 0"):
        parse_pipeline(resource)
    resource = pipeline_resource(tmp_path, [stage("s", 1, "read_filez")])
    did_you_mean = r"steps\[0\]: unknown step type 'readFilez' \(did you mean 'readFiles'\?\)"
    with pytest.raises(StepConfigError, match=did_you_mean):
        parse_pipeline(resource)
    assert run_local(resource) == 2


def test_in_pod_entry_runs_one_shard(tmp_path: Path) -> None:
    resource = pipeline_resource(
        tmp_path / "out", [stage("read", 2, ("read_files", {"paths": [str(STDLIB / "json")], "languages": ["python"]}))]
    )
    cfg = tmp_path / "resource.json"
    cfg.write_text(json.dumps(resource))
    env = {**os.environ, "JOB_COMPLETION_INDEX": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "codekiln.workloads.data", "--config", str(cfg), "--stage", "read"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith('{"stage"')][-1])  # progress lines too
    assert report["shard"] == 1 and not report["skipped"]
    assert (tmp_path / "out" / "read" / "_markers" / "shard-00001.done").exists()
    assert not (tmp_path / "out" / "read" / "_markers" / "shard-00000.done").exists()
    ids = [r["id"] for r in read_jsonl(tmp_path / "out" / "read" / "data" / "shard-00001.jsonl")]
    assert ids and all(np.isin(ids, [str(p) for p in sorted((STDLIB / "json").glob("*.py"))][1::2]))


def test_example_resource_parses() -> None:
    import yaml

    resource = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "datapipeline.yaml").read_text())
    config = parse_pipeline(resource)
    assert [s.name for s in config.stages] == ["ingest", "dedup", "tokenizer", "pack"]
    assert [s.name for s in config.plan()] == [
        "ingest", "dedup-hashes", "dedup-buckets", "dedup-cluster", "dedup", "tokenizer", "pack"]
    assert config.output_dir == "runs/datapipeline-demo"


def test_a_document_that_breaks_a_filter_is_rejected_not_fatal(tmp_path: Path) -> None:
    from codekiln.workloads.data.base import Filter, StageContext
    from codekiln.workloads.data.document import AtomicJsonlWriter, Document

    class Strict(Filter):
        name = "strict"

        def keep(self, doc: Document) -> bool | str:
            return int(doc.metadata["n"]) > 0 or "not_positive"

    ctx = StageContext(tmp_path, "s")
    ctx.rejects = AtomicJsonlWriter(tmp_path / "rejects.jsonl")
    step = Strict(Strict.Params(), ctx)
    docs = [Document(str(i), "x\n", {"n": n}) for i, n in enumerate([1, "oops", 0, None, 3])]
    assert [d.id for d in step(iter(docs), 0, 1)] == ["0", "4"]
    ctx.rejects.close()
    assert step.stats.rejects == {"error_ValueError": 1, "not_positive": 1, "error_TypeError": 1}
    rejects = list(read_jsonl(tmp_path / "rejects.jsonl"))
    assert [r["source"] for r in rejects] == ["1", "3"] and "invalid literal" in rejects[0]["reason"]


def test_stage_references_and_minhash_params_are_checked(tmp_path: Path) -> None:
    later = pipeline_resource(tmp_path, [stage("a", 1, "fim", input="b"), stage("b", 1, "fim", input="a")])
    with pytest.raises(StepConfigError, match=r"stages\[0\]\.input: stage 'b' runs later"):
        parse_pipeline(later)
    too_many_bands = pipeline_resource(tmp_path, [
        stage("read", 1, ("read_files", {"paths": [str(STDLIB / "json")]})),
        stage("dedup", 1, input="read", dedup={"near": {"numPerm": 64, "bands": 16, "rows": 8}}),
    ])
    with pytest.raises(StepConfigError, match=r"stages\[1\]\.dedup\.near: .*bands\*rows = 128 exceeds numPerm = 64"):
        parse_pipeline(too_many_bands)
