"""Fluent factories for codekiln resources as a server would return them (uid, namespace set)."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from codekiln.operator.resources import RESOURCE_KINDS, Resource

API = "codekiln.dev/v1alpha1"

BASE_SPECS: dict[str, dict[str, Any]] = {
    "DataPipeline": {"pipeline": {"outputDir": "/data/out", "stages": [
        {"name": "read", "shards": 4, "steps": [{"readFiles": {"paths": ["/data/src"]}}]},
        {"name": "dedup", "shards": 2, "input": "read", "steps": [{"exactDedup": {}}]},
    ]}},
    "PretrainRun": {"nodes": 2, "training": {
        "data": {"path": "/data/packed"},
        "stages": [{"name": "s1", "steps": 10, "lr": 3e-4, "seqLen": 128}],
    }},
    "RLRun": {"nodes": 2, "sandboxPoolRef": {"name": "pool"}, "rl": {"algorithm": "grpo"}},
    "SandboxPool": {"replicas": 2},
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into a copy of ``base`` (``None`` deletes a key)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def document(kind: str, name: str = "demo", namespace: str = "default", uid: bool = True,
             **spec: Any) -> dict[str, Any]:
    """A wire-form resource of ``kind`` with ``spec`` fields deep-merged over a minimal valid spec."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if uid:
        metadata["uid"] = str(uuid.uuid4())
    return {"apiVersion": API, "kind": kind, "metadata": metadata, "spec": merge(BASE_SPECS[kind], spec)}


def resource(kind: str, name: str = "demo", **spec: Any) -> Resource:
    """The validated pydantic model of :func:`document`."""
    return RESOURCE_KINDS[kind].model_validate(document(kind, name, **spec))
