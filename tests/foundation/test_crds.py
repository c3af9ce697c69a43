"""Generated CRDs: committed copies are current, structural, and valid for Kubernetes."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from codekiln.operator.builders import seccomp_profile
from codekiln.operator.crds import CRD_FOLDERS, SECCOMP_PROFILE_FILE, build_crds, crd_filename, render_crd

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
ALLOWED_KEYS = {
    "type", "description", "properties", "items", "required", "enum", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems",
    "additionalProperties", "default", "nullable", "x-kubernetes-preserve-unknown-fields", "minProperties",
    "maxProperties", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
}


@pytest.mark.parametrize("folder", CRD_FOLDERS, ids=str)
def test_committed_crds_equal_generated(folder: Path) -> None:
    expected = {crd_filename(c): render_crd(c) for c in build_crds()}
    present = {p.name: p.read_text() for p in (ROOT / folder).glob("*.yaml")}
    assert sorted(present) == sorted(expected), f"{folder}: run `codekiln crds` to regenerate"
    for name, text in expected.items():
        assert present[name] == text, f"{folder}/{name} is stale: run `codekiln crds`"


def test_committed_seccomp_profile_equals_generated() -> None:
    assert (ROOT / SECCOMP_PROFILE_FILE).read_text() == seccomp_profile.render(), "run `codekiln crds`"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("crd", build_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_crd_passes_strict_kubernetes_schema(crd: dict, version: str) -> None:
    kubernetes_validate.validate(crd, version, strict=True)


def _walk(node: dict, path: str):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("crd", build_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_crd_schema_is_structural(crd: dict) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["metadata"] == {"type": "object"}, "only name/generateName may be restricted"
    for path, node in _walk(schema, "$"):
        assert set(node) <= ALLOWED_KEYS, f"{path}: non-structural keys {set(node) - ALLOWED_KEYS}"
        has_escape = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert "type" in node or has_escape, f"{path}: no type"
        assert not ("properties" in node and "additionalProperties" in node), f"{path}: properties + additional"
        if "default" in node and "enum" in node:
            assert node["default"] in node["enum"], f"{path}: default outside enum"
        if path.startswith("$.spec") and path != "$.spec":
            assert node.get("description") or path.count(".") > 2 or "[]" in path, f"{path}: no description"


def test_crd_names_columns_and_subresources() -> None:
    crds = {c["spec"]["names"]["kind"]: c for c in build_crds()}
    assert set(crds) == {"DataPipeline", "PretrainRun", "RLRun", "SandboxPool"}
    for kind, crd in crds.items():
        names = crd["spec"]["names"]
        assert names["categories"] == ["codekiln"] and names["shortNames"]
        version = crd["spec"]["versions"][0]
        assert "status" in version["subresources"]
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        assert {"Phase", "Progress", "Age"} <= set(columns), kind
        assert len(columns) > 3, f"{kind} needs kind-specific columns"
    scale = crds["SandboxPool"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert all("scale" not in c["spec"]["versions"][0]["subresources"] for k, c in crds.items() if k != "SandboxPool")


def test_rendered_crd_roundtrips_through_yaml() -> None:
    for crd in build_crds():
        assert yaml.safe_load(render_crd(crd)) == crd
