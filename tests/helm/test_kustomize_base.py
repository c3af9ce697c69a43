"""config/ (the Kustomize base): rendered from the chart, accepted by `kubectl apply -k`, in sync with the chart.

Regenerate after a chart change: ``python tests/helm/test_kustomize_base.py --write``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "config"
KUBECTL = shutil.which("kubectl")
# What the base deploys: the chart with a cluster-wide operator (the GitOps default), its own ServiceAccount.
VALUES = {"watch": {"allNamespaces": True}, "workloadRbac": {"create": False}}
GROUPS = {"rbac": ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"), "manager": ("Deployment", "Service")}
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version")
HEADER = "# Generated from helm/codekiln by tests/helm/test_kustomize_base.py --write; do not edit.\n"


def rendered_base() -> dict[str, str]:
    """file name under config/ -> YAML text, from the chart (release "codekiln", namespace codekiln-system)."""
    import helm_python as helm

    chart = helm.Chart.load(REPO / "helm" / "codekiln")
    rendered = chart.render(VALUES, name="codekiln", namespace="codekiln-system", is_install=True)
    docs = [doc for path, text in sorted(rendered.items()) if not path.endswith(".txt")
            for doc in yaml.safe_load_all(text) if doc]
    out = {}
    for folder, kinds in GROUPS.items():
        selected = []
        for doc in sorted((d for d in docs if d["kind"] in kinds), key=lambda d: (kinds.index(d["kind"]),
                                                                                   d["metadata"]["name"])):
            meta = doc["metadata"]
            meta.pop("namespace", None)  # the kustomization sets it
            meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_ONLY_LABELS}
            selected.append(doc)
        out[f"{folder}/{folder}.yaml"] = HEADER + yaml.safe_dump_all(selected, sort_keys=False)
    return out


def test_base_files_match_the_chart():
    for rel, text in rendered_base().items():
        assert (CONFIG / rel).read_text() == text, f"config/{rel} is stale: run python {__file__} --write"


def _kustomize() -> list[dict[str, Any]]:
    if KUBECTL is not None:
        done = subprocess.run([KUBECTL, "kustomize", str(CONFIG / "default")], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if d]
    pytest.skip("kubectl is not installed on this machine (kubectl kustomize)")


def test_kustomize_builds_crds_rbac_and_the_operator_in_one_namespace():
    docs = _kustomize()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("CustomResourceDefinition") == 4 and "Deployment" in kinds and "Namespace" in kinds
    namespaced = [d for d in docs if d["kind"] in ("Deployment", "Service", "ServiceAccount")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"codekiln-system"}
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding" and d["metadata"]["name"].endswith("operator"))
    assert binding["subjects"][0]["namespace"] == "codekiln-system"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert "--all-namespaces" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_kubectl_apply_k_accepts_the_base(tmp_path):
    """`kubectl apply -k config/default` against the API emulator: every object is created."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed on this machine")
    sys.path.insert(0, str(REPO / "tests" / "k8s"))
    from k8s_emulator.server import EmulatorThread

    with EmulatorThread() as k8s:
        env = {**os.environ, "KUBECONFIG": str(k8s.write_kubeconfig(tmp_path / "kubeconfig"))}
        done = subprocess.run([KUBECTL, "apply", "-k", str(CONFIG / "default")], capture_output=True, text=True,
                              env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "deployment.apps/codekiln created" in done.stdout
        waited = subprocess.run([KUBECTL, "wait", "--for=condition=established", "--timeout=30s",
                                 "crd/pretrainruns.codekiln.dev"], capture_output=True, text=True, env=env, timeout=60)
        assert waited.returncode == 0, waited.stderr


if __name__ == "__main__" and "--write" in sys.argv:
    for rel, text in rendered_base().items():
        (CONFIG / rel).parent.mkdir(parents=True, exist_ok=True)
        (CONFIG / rel).write_text(text)
        print(f"wrote config/{rel}")
