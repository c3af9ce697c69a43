"""The stages that run: ``expand_stages`` is the one list the operator's Jobs and the local runner share."""

from __future__ import annotations

from pathlib import Path

import yaml

from codekiln.operator.builders import data as data_builders
from codekiln.operator.resources import DataPipeline
from codekiln.workloads.data.config import expand_stages
from codekiln.workloads.data.step_params import optimal_bands

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "datapipeline.yaml"


def test_the_example_dedup_block_expands_into_the_sharded_stages() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"].update(namespace="default", uid="0f3e9c6e-1d0b-4a35-9a57-2f1b5c7d8e90")  # as from the server
    res = DataPipeline.model_validate(doc)
    plan = expand_stages(res.spec.pipeline)
    assert [(s.name, s.shards, [t for t, _ in s.steps]) for s in plan] == [
        ("ingest", 2, ["read_files", "syntax_filter", "heuristic_filter"]),
        ("dedup-hashes", 2, ["read_stage", "exact_dedup_hashes", "minhash_signatures"]),
        ("dedup-buckets", 2, ["minhash_buckets"]),
        ("dedup-cluster", 1, ["minhash_cluster"]),
        ("dedup", 2, ["read_stage", "exact_dedup_filter", "minhash_filter"]),
        ("tokenizer", 1, ["read_stage", "train_tokenizer"]),
        ("pack", 2, ["read_stage", "fim", "pack"]),
    ]
    steps = {s.name: dict(s.steps) for s in plan}
    near = steps["dedup-hashes"]["minhash_signatures"]
    assert (near.num_perm, near.threshold, near.bands, near.rows) == (250, 0.7, *optimal_bands(0.7, 250))
    for stage, step in (("dedup-buckets", "minhash_buckets"), ("dedup-cluster", "minhash_cluster"),
                        ("dedup", "minhash_filter")):  # MinHash stated once: every stage gets the same settings
        params = steps[stage][step]
        assert params.signatures_stage == "dedup-hashes"
        assert params.model_dump(exclude={"signatures_stage"}) == near.model_dump()
    assert steps["dedup"]["exact_dedup_filter"].hashes_stage == "dedup-hashes"
    assert steps["pack"]["read_stage"].stage == "dedup"
    # the operator makes one Indexed Job per planned stage, in that order
    assert data_builders.stage_job_names(res) == [f"datapipeline-demo-{s.name}" for s in plan]
    job = data_builders.build_stage_job(res, 2)
    assert job["spec"]["completions"] == 2 and "dedup-buckets" in job["spec"]["template"]["spec"]["containers"][0][
        "command"]


def test_only_exact_dedup_needs_no_minhash_stages() -> None:
    from codekiln.workloads.data.config import DataPipelineConfig

    cfg = DataPipelineConfig.model_validate({"outputDir": "o", "stages": [
        {"name": "read", "steps": [{"readJsonl": {"paths": ["x"]}}]},
        {"name": "uniq", "shards": 3, "input": "read", "dedup": {"exact": {"level": "repo"}},
         "steps": [{"fim": {"rate": 0.1}}]}]})
    assert [(s.name, [t for t, _ in s.steps]) for s in cfg.plan()] == [
        ("read", ["read_jsonl"]), ("uniq-hashes", ["read_stage", "exact_dedup_hashes"]),
        ("uniq", ["read_stage", "exact_dedup_filter", "fim"])]
