"""Bad inputs across the four kinds: refused by ``codekiln validate`` AND by the API server (CRD schema).

Each case is applied the way ``kubectl apply`` sends it (POST with ``fieldValidation=Strict``) to the
Kubernetes API emulator serving the generated CRDs (structural schema, list-map keys, CEL rules), and
validated with ``codekiln validate``; both must name the field.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from codekiln.operator.cli import main
from codekiln.operator.crds import build_crds

from .factories import datapipeline, pretrainrun, rlrun, sandboxpool, with_

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "k8s"))
from k8s_emulator.server import EmulatorThread  # noqa: E402


def _pipeline(*stages: dict) -> dict[str, Any]:
    return with_(datapipeline(), "spec.pipeline.stages", list(stages))


READ = {"name": "ingest", "shards": 2, "steps": [{"readFiles": {"paths": ["/data/src"]}}]}


def _dedup(**near: Any) -> dict:
    return {"name": "dedup", "input": "ingest", "dedup": {"exact": {}, "near": {"threshold": 0.7, **near}}}


def _rl_staged(**flat: Any) -> dict[str, Any]:
    rl = {"algorithm": "grpo", "stages": [{"name": "s", "steps": 2, "maxResponseTokens": 16, "rolloutsPerPrompt": 4}],
          **flat}
    return with_(rlrun(), "spec.rl", rl)


# case -> (document, what `codekiln validate` prints, the field path the API server names)
CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    # DataPipeline
    "dp-misspelt-step-type": (
        _pipeline({**READ, "steps": [{"readFilez": {"paths": ["/x"]}}]}),
        "spec.pipeline.stages[0].steps[0]: unknown step type 'readFilez' (did you mean 'readFiles'?)",
        "spec.pipeline.stages[0].steps[0].readFilez"),
    "dp-num-perm-not-a-number": (
        _pipeline(READ, _dedup(numPerm="lots")),
        "spec.pipeline.stages[1].dedup.near.numPerm: Input should be a valid integer",
        "spec.pipeline.stages[1].dedup.near.numPerm"),
    "dp-duplicate-stage-name": (
        _pipeline(READ, {**READ, "input": "ingest", "steps": [{"syntaxFilter": {}}]}),
        "spec.pipeline.stages[1].name: duplicate stage name 'ingest' (also stages[0])",
        "spec.pipeline.stages[1]"),
    "dp-pack-seq-len-not-a-number": (
        _pipeline(READ, {"name": "pack", "input": "ingest", "steps": [{"pack": {"seqLen": "big"}}]}),
        "spec.pipeline.stages[1].steps[0].pack.seqLen: Input should be a valid integer",
        "spec.pipeline.stages[1].steps[0].pack.seqLen"),
    "dp-two-types-in-one-step": (
        _pipeline({**READ, "steps": [{"readFiles": {"paths": ["/x"]}, "syntaxFilter": {}}]}),
        "spec.pipeline.stages[0].steps[0]: a step names exactly one type",
        "spec.pipeline.stages[0].steps[0]"),
    "dp-input-names-no-stage": (
        _pipeline(READ, {"name": "pack", "input": "ingst", "steps": [{"pack": {}}]}),
        "spec.pipeline.stages[1].input: no stage named 'ingst' (did you mean 'ingest'?)",
        "spec.pipeline.stages"),
    "dp-dedup-without-input": (
        _pipeline(READ, {"name": "dedup", "dedup": {"exact": {}}}),
        "spec.pipeline.stages[1].dedup: needs `input`",
        "spec.pipeline.stages"),
    "dp-fraction-out-of-range": (
        _pipeline({**READ, "steps": [*READ["steps"], {"heuristicFilter": {"default": {"minAlphaFraction": 1.5}}}]}),
        "spec.pipeline.stages[0].steps[1].heuristicFilter.default.minAlphaFraction: Input should be less than",
        "spec.pipeline.stages[0].steps[1].heuristicFilter.default.minAlphaFraction"),
    "dp-bad-enum-in-step": (
        _pipeline({**READ, "steps": [*READ["steps"], {"syntaxFilter": {"pythonParser": "regex"}}]}),
        "spec.pipeline.stages[0].steps[1].syntaxFilter.pythonParser: Input should be 'ast' or 'tree_sitter'",
        "spec.pipeline.stages[0].steps[1].syntaxFilter.pythonParser"),
    # PretrainRun
    "ptr-seq-len-not-a-number": (
        with_(pretrainrun(), "spec.training.stages.0.seqLen", "big"),
        "spec.training.stages[0].seqLen: Input should be a valid integer",
        "spec.training.stages[0].seqLen"),
    "ptr-vocab-size-word": (
        with_(pretrainrun(), "spec.training.model", {"preset": "tiny", "vocabSize": "lots"}),
        "spec.training.model.vocabSize: Input should be a valid integer",
        "spec.training.model.vocabSize"),
    "ptr-nproc-per-node-zero": (
        with_(pretrainrun(), "spec.nprocPerNode", 0),
        "spec.nprocPerNode: Input should be greater than or equal to 1",
        "spec.nprocPerNode"),
    "ptr-nproc-per-node-in-training": (
        with_(pretrainrun(), "spec.training.nprocPerNode", 8),
        "spec.training.nprocPerNode: unknown field",
        "spec.training.nprocPerNode"),
    "ptr-negative-grad-clip": (
        with_(pretrainrun(), "spec.training.optimizer", {"gradClipNorm": -1}),
        "spec.training.optimizer.gradClipNorm: Input should be greater than 0",
        "spec.training.optimizer.gradClipNorm"),
    "ptr-duplicate-stage-name": (
        with_(pretrainrun(), "spec.training.stages", [{"name": "a", "steps": 1, "seqLen": 64}] * 2),
        "spec.training.stages[1].name: duplicate stage name 'a'",
        "spec.training.stages[1]"),
    # RLRun
    "rl-flat-and-staged": (
        _rl_staged(rolloutsPerPrompt=8),
        "spec.rl.rolloutsPerPrompt: set per stage when stages are given",
        "spec.rl"),
    "rl-flat-lr-moved-to-optimizer": (
        with_(rlrun(), "spec.rl.lr", 1e-5),
        "spec.rl.lr: unknown field",
        "spec.rl.lr"),
    "rl-zero-lr": (
        with_(rlrun(), "spec.rl.optimizer", {"lr": 0}),
        "spec.rl.optimizer.lr: Input should be greater than 0",
        "spec.rl.optimizer.lr"),
    "rl-stage-group-size-zero": (
        with_(_rl_staged(), "spec.rl.stages.0.rolloutsPerPrompt", 0),
        "spec.rl.stages[0].rolloutsPerPrompt: Input should be greater than or equal to 1",
        "spec.rl.stages[0].rolloutsPerPrompt"),
    "rl-checkpoint-dir-empty": (
        with_(rlrun(), "spec.rl.checkpoint", {"dir": ""}),
        "spec.rl.checkpoint.dir: String should have at least 1 character",
        "spec.rl.checkpoint.dir"),
    # SandboxPool
    "sbp-negative-replicas": (
        with_(sandboxpool(), "spec.replicas", -1),
        "spec.replicas: Input should be greater than or equal to 0",
        "spec.replicas"),
    "sbp-pull-policy": (
        with_(sandboxpool(), "spec.imagePullPolicy", "Sometimes"),
        "spec.imagePullPolicy: Input should be 'Always', 'IfNotPresent' or 'Never'",
        "spec.imagePullPolicy"),
    "sbp-port-out-of-range": (
        with_(sandboxpool(), "spec.sandbox", {"port": 70000}),
        "spec.sandbox.port: Input should be less than or equal to 65535",
        "spec.sandbox.port"),
}


@pytest.fixture(scope="module")
def api() -> Iterator[httpx.Client]:
    with EmulatorThread(crds=build_crds(), namespaces=["default"]) as k8s, httpx.Client(base_url=k8s.url) as http:
        yield http


def _apply(http: httpx.Client, doc: dict[str, Any]) -> httpx.Response:
    """What `kubectl apply` of a new object sends: a POST with server-side strict field validation."""
    plural = {"DataPipeline": "datapipelines", "PretrainRun": "pretrainruns", "RLRun": "rlruns",
              "SandboxPool": "sandboxpools"}[doc["kind"]]
    return http.post(f"/apis/codekiln.dev/v1alpha1/namespaces/default/{plural}", json=doc,
                     params={"fieldValidation": "Strict"})


def test_there_are_enough_cases_in_every_kind() -> None:
    kinds = [doc["kind"] for doc, _, _ in CASES.values()]
    assert len(kinds) >= 15 and {kinds.count(k) >= 3 for k in set(kinds)} == {True}, kinds


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_by_validate_and_by_the_api_server(case: str, api: httpx.Client, tmp_path: Path, capsys) -> None:
    doc, validate_line, api_field = CASES[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", "-f", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(f"{path}#1: {validate_line}" in line for line in err), err
    response = _apply(api, doc)
    assert response.status_code in (400, 422), response.text
    message = response.json()["message"]
    assert api_field in message, message


@pytest.mark.parametrize("make", [datapipeline, pretrainrun, rlrun, sandboxpool])
def test_the_valid_base_documents_are_accepted(make, api: httpx.Client) -> None:
    doc = make(name=f"ok-{make.__name__}")
    assert main(["validate", "-f", _write_tmp(doc)]) == 0
    assert _apply(api, doc).status_code == 201


def _write_tmp(doc: dict[str, Any]) -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(doc, fh)
    return fh.name


def test_a_folder_is_checked_across_resources(tmp_path: Path, capsys) -> None:
    """A PretrainRun's seqLen and vocabSize against the DataPipeline in its spec.after (same folder)."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    pipeline = yaml.safe_load((examples / "datapipeline.yaml").read_text())
    run = yaml.safe_load((examples / "pretrainrun.yaml").read_text())
    run["spec"]["training"]["stages"][1]["seqLen"] = 1000
    run["spec"]["training"]["model"]["vocabSize"] = 4096
    (tmp_path / "datapipeline.yaml").write_text(yaml.safe_dump(pipeline))
    (tmp_path / "pretrainrun.yaml").write_text(yaml.safe_dump(run))
    assert main(["validate", "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pretrainrun.yaml#1: spec.training.stages[1].seqLen: 1000 neither divides nor is a multiple of the pack " \
           "seqLen 8192 of DataPipeline 'datapipeline-demo' (spec.after[0])" in err
    assert "spec.training.model.vocabSize: 4096 is smaller than the tokenizer DataPipeline 'datapipeline-demo'" in err
    assert "spec.training.stages[0]" not in err  # 256 divides 8192
    assert main(["run", "--local", "-f", str(tmp_path)]) == 2  # refused before anything runs
    assert "spec.training.stages[1].seqLen: 1000" in capsys.readouterr().err
