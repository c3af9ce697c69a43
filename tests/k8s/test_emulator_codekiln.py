"""The emulator serves codekiln's generated CRDs: examples are accepted unpruned, bad values rejected by field."""

import copy
import pathlib
from typing import Any

import pytest
import yaml
from k8s_emulator.client import ApiError, KubeClient

from codekiln.operator.crds import build_crds
from codekiln.operator.kustomize import render

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parents[2] / "examples"
# plain files and Kustomize folders (rendered as `kubectl kustomize` would)
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml")) + sorted(p.parent for p in EXAMPLES_DIR.glob("*/kustomization.yaml"))


@pytest.fixture
def k8s_crds():
    return build_crds()


def _load(path: pathlib.Path) -> dict[str, Any]:
    if path.is_dir():
        return render(path)[0]
    return next(doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def _missing(given: Any, stored: Any, path: str = "") -> list[str]:
    """Paths present in ``given`` but lost (pruned) or changed in ``stored``."""
    if isinstance(given, dict):
        if not isinstance(stored, dict):
            return [path]
        return [p for k, v in given.items() for p in (_missing(v, stored[k], f"{path}.{k}") if k in stored
                                                       else [f"{path}.{k}"])]
    if isinstance(given, list):
        if not isinstance(stored, list) or len(stored) != len(given):
            return [path]
        return [p for i, (g, s) in enumerate(zip(given, stored, strict=True)) for p in _missing(g, s, f"{path}[{i}]")]
    return [] if given == stored else [path]


def test_all_four_kinds_are_served(k8s_client: KubeClient) -> None:
    served = {r["kind"] for r in k8s_client.http.get("/apis/codekiln.dev/v1alpha1").json()["resources"]}
    assert served == {"DataPipeline", "PretrainRun", "RLRun", "SandboxPool"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_accepted_without_pruning(k8s_client: KubeClient, path: pathlib.Path) -> None:
    example = _load(path)
    created = k8s_client.create(example, "default")
    assert _missing(example["spec"], created["spec"], "spec") == []


def test_sandboxpool_scale_subresource(k8s_client: KubeClient) -> None:
    pool = _load(next(p for p in EXAMPLES if p.stem == "sandboxpool"))
    k8s_client.create(pool, "default")
    name = pool["metadata"]["name"]
    k8s_client.patch("codekiln.dev/v1alpha1", "SandboxPool", name, {"spec": {"replicas": 3}}, "default", sub="scale")
    assert k8s_client.get("codekiln.dev/v1alpha1", "SandboxPool", name, "default")["spec"]["replicas"] == 3


def test_a_negative_node_count_is_rejected_naming_the_field(k8s_client: KubeClient) -> None:
    run = copy.deepcopy(_load(next(p for p in EXAMPLES if p.stem == "pretrainrun")))
    run["spec"]["nodes"] = -1
    with pytest.raises(ApiError) as err:
        k8s_client.create(run, "default")
    assert err.value.status == 422 and "spec.nodes" in err.value.body["message"]
