"""Kustomize folders in `codekiln validate/run -f`: rendered exactly as `kubectl kustomize` renders them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from codekiln.operator.cli import main
from codekiln.operator.kustomize import KustomizeError, render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OVERLAYS = sorted(p.parent for p in EXAMPLES.glob("*/kustomization.yaml"))


def _key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) is not installed")
@pytest.mark.parametrize("folder", OVERLAYS, ids=[p.name for p in OVERLAYS])
def test_examples_render_like_kubectl_kustomize(folder: Path) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True).stdout
    expected = sorted((d for d in yaml.safe_load_all(out) if d), key=_key)
    assert sorted(render(folder), key=_key) == expected


def test_the_overlay_differs_from_its_base_only_where_it_says(tmp_path: Path) -> None:
    base, overlay = render(EXAMPLES / "rlrun")[0], render(EXAMPLES / "rlrun-from-pretrain")[0]
    assert overlay["metadata"]["name"] == "rlrun-from-pretrain" and "model" not in overlay["spec"]["rl"]
    assert overlay["spec"]["rl"]["warmStart"]["initCheckpoint"] == "runs/pretrainrun-demo/hf"
    for key in ("stages", "optimizer", "kat", "tasks", "promptsPerStep"):
        assert overlay["spec"]["rl"][key] == base["spec"]["rl"][key]


def test_merge_patch_files_and_errors_name_the_field(tmp_path: Path, capsys) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "pool.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "codekiln.dev/v1alpha1", "kind": "SandboxPool", "metadata": {"name": "p"},
         "spec": {"replicas": 2, "runtimeClassName": "gvisor"}}))
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: [pool.yaml]\n")
    (tmp_path / "prod").mkdir()
    (tmp_path / "prod" / "more.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "codekiln.dev/v1alpha1", "kind": "SandboxPool", "metadata": {"name": "p"},
         "spec": {"replicas": -3, "runtimeClassName": None}}))
    (tmp_path / "prod" / "kustomization.yaml").write_text("resources: [../base]\npatches: [{path: more.yaml}]\n")
    (doc,) = render(tmp_path / "prod")
    assert doc["spec"] == {"replicas": -3}  # merged; null deleted
    assert main(["validate", "-f", str(tmp_path / "prod")]) == 2
    assert "prod/kustomization.yaml#1: spec.replicas: Input should be greater than or equal to 0" \
        in capsys.readouterr().err
    (tmp_path / "prod" / "kustomization.yaml").write_text("resources: [../base]\nnamePrefix: x-\n")
    with pytest.raises(KustomizeError, match=r"namePrefix: not supported by codekiln's renderer"):
        render(tmp_path / "prod")
