"""Fluent factories for minimal valid resources (tests only)."""

from __future__ import annotations

import copy
from typing import Any

API = "codekiln.dev/v1alpha1"


def _resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def datapipeline(name: str = "curate") -> dict[str, Any]:
    stage = {"name": "read", "shards": 2, "steps": [{"readFiles": {"paths": ["/data/src"]}}]}
    return _resource("DataPipeline", name, {"pipeline": {"outputDir": "/data/out", "stages": [stage]}})


def pretrainrun(name: str = "pretrain") -> dict[str, Any]:
    stage = {"name": "s1", "steps": 10, "lr": 3e-4, "seqLen": 128}
    training = {"data": {"path": "/data/packed"}, "stages": [stage]}
    return _resource("PretrainRun", name, {"nodes": 2, "training": training})


def rlrun(name: str = "rl") -> dict[str, Any]:
    return _resource("RLRun", name, {"sandboxPoolRef": {"name": "pool"}, "rl": {"algorithm": "grpo"}})


def sandboxpool(name: str = "pool") -> dict[str, Any]:
    return _resource("SandboxPool", name, {"replicas": 2})


def with_(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the dotted ``path`` set (``None`` deletes it)."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    if value is None:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return out
