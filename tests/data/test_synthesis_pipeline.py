"""The synthesis example, end to end through the local runner, against ``codekiln serve`` of a real model.

The example's ``llm.serve`` (the demo's export) is pointed at a tiny random export; everything else
(stages, steps, sandbox, served model over HTTP) is what ``codekiln run --local`` runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from llm.helpers import tiny_export
from rich.console import Console

from codekiln.workloads.data.base import StepStats
from codekiln.workloads.data.runner import run_local, stats_table

from .conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "datapipeline-synthesis.yaml"


def _retarget(node, model_dir: str):
    if isinstance(node, dict):
        return {k: (model_dir if k == "serve" else _retarget(v, model_dir)) for k, v in node.items()}
    if isinstance(node, list):
        return [_retarget(v, model_dir) for v in node]
    return node


def test_synthesis_example_runs_every_stage_against_the_served_model(tmp_path, monkeypatch, local_sandbox_url):
    resource = _retarget(yaml.safe_load(EXAMPLE.read_text()), str(tiny_export()))
    pipeline = resource["spec"]["pipeline"]
    pipeline["outputDir"] = str(tmp_path / "out")
    for stage in pipeline["stages"]:
        for step in stage["steps"]:
            if "readJsonl" in step:
                step["readJsonl"]["paths"] = [str(REPO_ROOT / p) for p in step["readJsonl"]["paths"]]
            if "readFiles" in step:
                step["readFiles"]["limit"] = 3  # three stdlib json modules: a few seeds, quick on CPU
    monkeypatch.setenv("CODEKILN_DATA_PROCESSES", "1")
    monkeypatch.setenv("CODEKILN_SANDBOX_URL", local_sandbox_url)  # steps without sandboxUrl use the session's
    assert run_local(resource) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    flat = {(stage, s["name"]): s for stage, steps in stats.items() if isinstance(steps, list) for s in steps}
    assert flat[("seeds", "seed_snippets")]["docs_out"] > 0
    inst = flat[("instruct", "instruction_generation")]
    assert inst["docs_in"] == flat[("seeds", "seed_snippets")]["docs_out"]
    assert inst["counters"]["llm_completion_tokens"] > 0 and inst["counters"]["llm_requests"] > 0
    judge = flat[("sft", "llm_judge_filter")]
    assert judge["docs_in"] == judge["docs_out"] + sum(judge["rejects"].values())  # every drop has a reason
    assert flat[("dpo", "dpo_pairs")]["docs_in"] == 4 and flat[("warmup", "rejection_sampling")]["docs_in"] == 4
    dpo = flat[("dpo", "dpo_pairs")]
    assert dpo["counters"]["samples_passed"] + dpo["counters"]["samples_failed"] == 16  # really run in the sandbox
    assert (tmp_path / "out" / "sft" / "decontam" / "shard-00000.jsonl").exists()
    assert Path(tmp_path / "out" / "llm_cache").is_dir()
    console = Console(width=400, record=True)  # the stats table shows the token accounting
    console.print(stats_table({stage: [StepStats.from_dict(s) for s in steps] for stage, steps in stats.items()
                               if isinstance(steps, list)}))
    assert "llm_prompt_tokens=" in console.export_text()
