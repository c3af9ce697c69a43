"""`codekiln validate`: one line per problem, naming the field; exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from codekiln.operator.cli import main
from codekiln.operator.validation import validate_document

from .factories import datapipeline, pretrainrun, rlrun, sandboxpool, with_

BAD_INPUTS = {
    "wrong-api-version": (with_(pretrainrun(), "apiVersion", "codekiln.dev/v1"), "apiVersion: expected"),
    "unknown-kind": (with_(pretrainrun(), "kind", "TrainJob"), "kind: unknown kind 'TrainJob'"),
    "unknown-field": (with_(pretrainrun(), "spec.bogus", 1), "spec.bogus: unknown field"),
    "wrong-type": (with_(pretrainrun(), "spec.nodes", "two"), "spec.nodes: Input should be a valid integer"),
    "out-of-range": (with_(pretrainrun(), "spec.nodes", 0), "spec.nodes: Input should be greater than or equal to 1"),
    "bad-enum": (with_(pretrainrun(), "spec.training.objective", "rlhf"), "spec.training.objective: Input should be"),
    "missing-required": (with_(pretrainrun(), "spec.training", None), "spec.training: required field is missing"),
    "reserved-env": (
        with_(pretrainrun(), "spec.env", [{"name": "MASTER_ADDR", "value": "x"}]),
        "spec.env[0].name: 'MASTER_ADDR' is reserved",
    ),
    "reserved-env-prefix": (
        with_(rlrun(), "spec.env", [{"name": "CODEKILN_SANDBOX_URL", "value": "x"}]),
        "spec.env[0].name: 'CODEKILN_SANDBOX_URL' is reserved",
    ),
    "negative-resources": (
        with_(pretrainrun(), "spec.resourcesPerNode", {"limits": {"cpu": "-2"}}),
        "spec.resourcesPerNode.limits: cpu: quantity must not be negative",
    ),
    "bad-quantity": (
        with_(sandboxpool(), "spec.resources", {"requests": {"memory": "lots"}}),
        "spec.resources.requests: memory: 'lots' is not a Kubernetes quantity",
    ),
    "empty-stages": (with_(datapipeline(), "spec.pipeline.stages", []), "spec.pipeline.stages: List should have"),
    "empty-training-stages": (with_(pretrainrun(), "spec.training.stages", []), "spec.training.stages: List should"),
    "bad-name": (with_(sandboxpool(), "metadata.name", "Bad_Name"), "metadata.name: String should match pattern"),
    "negative-replicas": (with_(sandboxpool(), "spec.replicas", -1), "spec.replicas: Input should be greater than"),
    "bad-algorithm": (with_(rlrun(), "spec.rl.algorithm", "ppo2"), "spec.rl.algorithm: Input should be"),
    "model-shape": (
        with_(pretrainrun(), "spec.training.model", {"nHeads": 3}),
        "spec.training.model: dim (64) must be divisible by nHeads (3)",
    ),
    "negative-deadline": (with_(pretrainrun(), "spec.activeDeadlineSeconds", -5), "spec.activeDeadlineSeconds:"),
    "bad-toleration": (
        with_(pretrainrun(), "spec.scheduling", {"tolerations": [{"operator": "Maybe"}]}),
        "spec.scheduling.tolerations[0].operator: Input should be 'Exists' or 'Equal'",
    ),
    "unmasked-proc-with-host-users": (
        with_(sandboxpool(), "spec.procMount", "Unmasked"),
        "spec.procMount: Unmasked requires hostUsers: false",
    ),
    "stage-shards-zero": (
        with_(datapipeline(), "spec.pipeline.stages.0.shards", 0),
        "spec.pipeline.stages[0].shards: Input should be greater than or equal to 1",
    ),
}


def _write(tmp_path: Path, docs: list, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.mark.parametrize("factory", [datapipeline, pretrainrun, rlrun, sandboxpool])
def test_minimal_resources_are_valid(factory) -> None:
    result = validate_document(factory())
    assert result.ok, result.errors


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_naming_the_field(case: str, tmp_path: Path, capsys) -> None:
    doc, expected = BAD_INPUTS[case]
    path = _write(tmp_path, [doc])
    assert main(["validate", "-f", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(expected in line for line in err), err
    assert all(line.startswith(f"{path}#1: ") for line in err), err


def test_malformed_yaml_names_the_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: codekiln.dev/v1alpha1\nkind: RLRun\nspec: [unclosed\n")
    assert main(["validate", "-f", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "malformed YAML" in err and "line" in err, err


def test_non_mapping_document(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, [["a", "list"]])
    assert main(["validate", "-f", str(path)]) == 2
    assert "<document>: expected a mapping" in capsys.readouterr().err


def test_missing_file(tmp_path: Path, capsys) -> None:
    assert main(["validate", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read file" in capsys.readouterr().err


def test_every_problem_is_reported(tmp_path: Path, capsys) -> None:
    doc = with_(with_(pretrainrun(), "spec.nodes", 0), "spec.bogus", True)
    assert main(["validate", "-f", str(_write(tmp_path, [doc]))]) == 2
    err = capsys.readouterr().err
    assert "spec.nodes:" in err and "spec.bogus:" in err


def test_multi_document_file_reports_only_bad_documents(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, [sandboxpool(), with_(rlrun(), "spec.nodes", -1), pretrainrun()])
    assert main(["validate", "-f", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "#1: SandboxPool 'pool' is valid" in out and "#3: PretrainRun 'pretrain' is valid" in out
    assert err.strip().splitlines() == [f"{path}#2: spec.nodes: Input should be greater than or equal to 1"]


def test_valid_file_exits_zero(tmp_path: Path) -> None:
    assert main(["validate", "-f", str(_write(tmp_path, [pretrainrun(), datapipeline()]))]) == 0


def test_installed_command_exit_code(tmp_path: Path) -> None:
    path = _write(tmp_path, [with_(pretrainrun(), "spec.nodes", "x")])
    proc = subprocess.run([sys.executable, "-m", "codekiln.operator.cli", "validate", "-f", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "spec.nodes: Input should be a valid integer" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_cannot_wait_for_itself_or_an_unknown_kind(tmp_path: Path, capsys) -> None:
    me = with_(pretrainrun(), "spec.after", [{"kind": "PretrainRun", "name": pretrainrun()["metadata"]["name"]}])
    pool = with_(pretrainrun(), "spec.after", [{"kind": "SandboxPool", "name": "pool"}])
    assert main(["validate", "-f", str(_write(tmp_path, [me, pool]))]) == 2
    err = capsys.readouterr().err
    assert "#1: spec.after[0]: a PretrainRun cannot wait for itself" in err
    assert "spec.after.0.kind" in err or "spec.after[0].kind" in err
