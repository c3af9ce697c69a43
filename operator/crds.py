"""Generate CustomResourceDefinitions from the pydantic resource models.

Pydantic emits JSON Schema (2020-12); Kubernetes wants *structural* OpenAPI v3:
no ``$ref``, a type on every node, ``nullable`` instead of ``null`` unions, no
``additionalProperties`` next to ``properties``, boolean ``exclusiveMinimum``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from codekiln.operator.resources import NAME_PATTERN, RESOURCE_KINDS, Resource
from codekiln.operator.version import API_GROUP, API_VERSION
from codekiln.workloads.atomic_io import atomic_write_text

CRD_FOLDERS = (Path("crds"), Path("helm/codekiln/crds"), Path("config/crd"))  # config/crd: the Kustomize base
SECCOMP_PROFILE_FILE = Path("helm/codekiln/files/seccomp/sandbox.json")  # SandboxPool node profile
_KEEP = {
    "type", "description", "properties", "items", "required", "enum", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "additionalProperties", "default", "nullable", "minProperties", "maxProperties",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
}

_COMMON_COLUMNS_HEAD = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
     "description": "Ready condition: serving (SandboxPool) or running/succeeded (runs)."},
]
_COMMON_COLUMNS_TAIL = [
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent", "description": "Percent done."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
PRINTER_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "DataPipeline": [
        {"name": "Stage", "type": "string", "jsonPath": ".status.currentStage"},
        {"name": "Done", "type": "integer", "jsonPath": ".status.stagesDone", "description": "Stages succeeded."},
        {"name": "Stages", "type": "integer", "jsonPath": ".status.stagesTotal", "description": "Stages in all."},
        {"name": "Throughput", "type": "number", "jsonPath": ".status.progress.throughput", "priority": 1},
    ],
    "PretrainRun": [
        {"name": "Nodes", "type": "integer", "jsonPath": ".spec.nodes"},
        {"name": "Stage", "type": "string", "jsonPath": ".status.progress.stage"},
        {"name": "Step", "type": "integer", "jsonPath": ".status.progress.step"},
        {"name": "Loss", "type": "number", "jsonPath": ".status.progress.loss"},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
        {"name": "Disruptions", "type": "integer", "jsonPath": ".status.disruptions", "priority": 1},
        {"name": "ETA(s)", "type": "number", "jsonPath": ".status.progress.etaSeconds", "priority": 1},
    ],
    "RLRun": [
        {"name": "Algorithm", "type": "string", "jsonPath": ".spec.rl.algorithm"},
        {"name": "Pool", "type": "string", "jsonPath": ".spec.sandboxPoolRef.name"},
        {"name": "Step", "type": "integer", "jsonPath": ".status.progress.step"},
        {"name": "Reward", "type": "number", "jsonPath": ".status.progress.reward"},
        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts", "priority": 1},
        {"name": "Disruptions", "type": "integer", "jsonPath": ".status.disruptions", "priority": 1},
    ],
    "SandboxPool": [
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
        {"name": "Available", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Runtime", "type": "string", "jsonPath": ".spec.runtimeClassName", "priority": 1},
    ],
}


NAME_MAX = 40  # ObjectMeta.name's max_length in resources.py


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def _merge_objects(options: list[dict[str, Any]]) -> dict[str, Any]:
    """A union of object schemas -> one object with all properties (pydantic checks the union)."""
    properties: dict[str, Any] = {}
    for option in options:
        properties.update(option.get("properties", {}))
    return {"type": "object", "properties": properties}


def _int_or_string(options: list[dict[str, Any]]) -> dict[str, Any]:
    """``int | Literal["auto"]``-style unions: int-or-string, numeric bounds from the integer member and a
    pattern from the string member (minimum only applies to numbers, pattern only to strings)."""
    out: dict[str, Any] = {"x-kubernetes-int-or-string": True}
    for option in options:
        node = structural(option)
        if node.get("type") == "integer":
            out.update({k: v for k, v in node.items() if k in ("minimum", "maximum", "exclusiveMinimum",
                                                                "exclusiveMaximum")})
        elif node.get("type") == "string":
            if "enum" in node:
                out["pattern"] = "^(" + "|".join(re.escape(str(v)) for v in node["enum"]) + ")$"
            elif "pattern" in node:
                out["pattern"] = node["pattern"]
    return out


def structural(node: dict[str, Any]) -> dict[str, Any]:
    """Turn one resolved JSON-Schema node into a structural OpenAPI v3 node."""
    node = dict(node)
    description = node.get("description")
    for key in ("anyOf", "oneOf"):
        if key in node:
            all_options = node.pop(key)
            options = [o for o in all_options if o.get("type") != "null"]
            nullable = len(options) < len(all_options)
            if len(options) == 1:
                merged = {**options[0], **{k: v for k, v in node.items() if k in ("description", "default")}}
                out = structural(merged)
            elif all(o.get("type") == "object" or "properties" in o for o in options):
                out = structural(_merge_objects(options))
            elif {o.get("type") for o in options} <= {"integer", "string"}:
                out = _int_or_string(options)
            else:
                out = {"x-kubernetes-preserve-unknown-fields": True}
            if description:
                out["description"] = description
            if nullable and out.get("type"):
                out["nullable"] = True
            return out
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
    out = {k: v for k, v in node.items() if k in _KEEP}
    if "default" in out and (out["default"] is None or isinstance(out["default"], (dict, list))):
        out.pop("default")
    if isinstance(out.get("exclusiveMinimum"), (int, float)) and not isinstance(out["exclusiveMinimum"], bool):
        out["minimum"], out["exclusiveMinimum"] = out["exclusiveMinimum"], True
    if isinstance(out.get("exclusiveMaximum"), (int, float)) and not isinstance(out["exclusiveMaximum"], bool):
        out["maximum"], out["exclusiveMaximum"] = out["exclusiveMaximum"], True
    if "properties" in out:
        out["type"] = "object"
        out["properties"] = {k: structural(v) for k, v in out["properties"].items()}
        extra = out.pop("additionalProperties", None)
        if extra is True or isinstance(extra, dict):
            out["x-kubernetes-preserve-unknown-fields"] = True
        if not out.get("required"):
            out.pop("required", None)
    elif out.get("type") == "object" or "additionalProperties" in out:
        out["type"] = "object"
        extra = out.pop("additionalProperties", None)
        if isinstance(extra, dict) and extra:
            out["additionalProperties"] = structural(extra)
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in out:
        out["items"] = structural(out["items"])
    if "type" not in out and "x-kubernetes-preserve-unknown-fields" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def model_schema(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(_resolve({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {})))


def build_crd(cls: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_model = cls.model_fields["spec"].annotation
    status_model = [a for a in cls.model_fields["status"].annotation.__args__ if a is not type(None)][0]
    spec_schema = model_schema(spec_model)
    status_schema = model_schema(status_model)
    status_schema.pop("nullable", None)
    status_schema["x-kubernetes-preserve-unknown-fields"] = True
    conditions = status_schema.get("properties", {}).get("conditions")
    if conditions is not None:  # one entry per type; server-side apply merges by type
        conditions["x-kubernetes-list-type"] = "map"
        conditions["x-kubernetes-list-map-keys"] = ["type"]
    schema = {
        "type": "object",
        "description": f"{cls.kind_name} ({API_GROUP}/{API_VERSION}).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        # The operator's name rules (child names append suffixes), enforced at `kubectl apply` time.
        "x-kubernetes-validations": [
            {"rule": f"self.metadata.name.size() <= {NAME_MAX}",
             "message": f"metadata.name must be at most {NAME_MAX} characters (codekiln appends suffixes to "
                        "child names)"},
            {"rule": f"self.metadata.name.matches('{NAME_PATTERN}')",
             "message": "metadata.name must be a DNS label: lowercase letters, digits and '-', no dots"},
        ],
    }
    columns = _COMMON_COLUMNS_HEAD + PRINTER_COLUMNS[cls.kind_name] + _COMMON_COLUMNS_TAIL
    subresources: dict[str, Any] = {"status": {}}
    if cls.kind_name == "SandboxPool":
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{cls.plural}.{API_GROUP}", "labels": {"app.kubernetes.io/part-of": "codekiln"}},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": cls.kind_name,
                "listKind": f"{cls.kind_name}List",
                "plural": cls.plural,
                "singular": cls.kind_name.lower(),
                "shortNames": list(cls.short_names),
                "categories": ["codekiln"],
            },
            "versions": [{
                "name": API_VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": subresources,
                "additionalPrinterColumns": columns,
            }],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """CRDs for all four kinds, in a stable order."""
    return [build_crd(cls) for cls in RESOURCE_KINDS.values()]


def crd_filename(crd: dict[str, Any]) -> str:
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"


def render_crd(crd: dict[str, Any]) -> str:
    header = "# Generated by `codekiln crds` from operator/resources.py. Do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=120)


def write_crds(root: Path = Path(".")) -> list[Path]:
    """Write every CRD into ``crds/`` and the Helm chart's ``crds/``, and the chart's SandboxPool
    seccomp profile; return the paths written."""
    from codekiln.operator.builders import seccomp_profile

    outputs = {root / folder / crd_filename(crd): render_crd(crd) for folder in CRD_FOLDERS for crd in build_crds()}
    outputs[root / SECCOMP_PROFILE_FILE] = seccomp_profile.render()
    for path, text in outputs.items():
        atomic_write_text(path, text)
    return list(outputs)
