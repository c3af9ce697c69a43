"""The CLI surface is frozen on purpose: changing it must change this test."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from codekiln.operator import runners
from codekiln.operator.cli import build_parser, main
from codekiln.operator.validation import validate_file

from .factories import sandboxpool, with_

ROOT = Path(__file__).resolve().parents[2]
SURFACE = {
    "crds": ["--root"],
    "validate": ["--file"],
    "run": ["--file", "--init-from", "--local"],
    "operator": ["--all-namespaces", "--liveness-port", "--metrics-port", "--namespace"],
    "sandbox serve": ["--config", "--host", "--max-concurrency", "--max-queue", "--port", "--work-dir"],
    "version": [],
    "agent": [],
    "serve": ["--host", "--model-name", "--port", "--threads"],
    "eval": ["--api-key-env", "--base-url", "--benchmark", "--config", "--fim", "--k", "--limit", "--max-tokens",
             "--mode", "--model", "--model-name", "--needle", "--out", "--samples-per-task", "--sandbox-url",
             "--seed", "--temperature", "--tokenizer"],
    "data": [],
    "render": ["--file", "--namespace", "--output"],
    "get": ["--all-namespaces", "--context", "--kubeconfig", "--namespace", "--output"],
    "describe": ["--context", "--kubeconfig", "--namespace"],
    "logs": ["--context", "--follow", "--kubeconfig", "--namespace", "--rank", "--replica", "--shard", "--stage",
             "--tail"],
    "wait": ["--context", "--for", "--interval", "--kubeconfig", "--namespace", "--timeout"],
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        max(a.option_strings, key=len) for a in parser._actions if a.option_strings and a.dest != "help"
    )


def test_cli_surface_is_frozen() -> None:
    commands = _subparsers(build_parser())
    surface = {name: _flags(p) for name, p in commands.items() if name != "sandbox"}
    surface.update({f"sandbox {n}": _flags(p) for n, p in _subparsers(commands["sandbox"]).items()})
    assert surface == SURFACE


@pytest.mark.parametrize("command", [c.split() for c in SURFACE])
def test_every_command_documents_itself(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: codekiln" in out and len(out.splitlines()) > 3


def test_version(capsys) -> None:
    assert main(["version"]) == 0
    assert "codekiln.dev/v1alpha1" in capsys.readouterr().out


def test_run_requires_local(tmp_path: Path, capsys) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(sandboxpool()))
    assert main(["run", "-f", str(path)]) == 2
    assert "only --local" in capsys.readouterr().err


def test_run_rejects_invalid_resource_before_running(tmp_path: Path, capsys) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(with_(sandboxpool(), "spec.replicas", "many")))
    assert main(["run", "--local", "-f", str(path)]) == 2
    assert "spec.replicas" in capsys.readouterr().err


def test_kind_without_runner_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(runners.LOCAL_RUNNERS, "SandboxPool", "codekiln.workloads.not_written_yet.runner:run_local")
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(sandboxpool()))
    assert main(["run", "--local", "-f", str(path)]) == 1
    assert "kind 'SandboxPool' has no local runner yet" in capsys.readouterr().err


def test_every_kind_has_a_runner_registered_and_importable() -> None:
    assert set(runners.LOCAL_RUNNERS) == {"DataPipeline", "PretrainRun", "RLRun", "SandboxPool"}
    for kind in runners.LOCAL_RUNNERS:
        assert callable(runners.resolve_runner(kind)), kind


def test_examples_cover_every_kind_and_validate() -> None:
    kinds = set()
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        for result in validate_file(example):
            assert result.ok, (example, result.errors)
            kinds.add(result.resource.kind)
    assert kinds == {"DataPipeline", "PretrainRun", "RLRun", "SandboxPool"}
