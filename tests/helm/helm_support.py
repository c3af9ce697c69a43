"""Render the chart with the real Helm library and answer RBAC questions about the result."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

import helm_python as helm
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "codekiln"
RELEASE, NAMESPACE = "ck", "codekiln-system"


def render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """All manifests the chart renders for ``values`` (templates only; CRDs come from ``crds/``)."""
    chart = helm.Chart.load(CHART)
    rendered = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def chart_crds() -> list[dict[str, Any]]:
    """The CRDs Helm installs from the chart's ``crds/`` folder."""
    return [yaml.safe_load(item["data"]) for item in helm.Chart.load(CHART).crds]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Documents of a kind (and name)."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


@dataclass(frozen=True)
class Subject:
    """A ServiceAccount identity."""

    namespace: str
    name: str


class Rbac:
    """Evaluates rendered Roles/ClusterRoles and their bindings the way the RBAC authorizer does."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def _rules_for(self, subject: Subject, namespace: str | None) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        for binding in self.docs:
            if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == subject.name
                       and s.get("namespace") == subject.namespace for s in binding.get("subjects") or []):
                continue
            if binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] != namespace:
                continue
            ref = binding["roleRef"]
            role_ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
            for role in find(self.docs, ref["kind"], ref["name"]):
                if role["metadata"].get("namespace") == role_ns:
                    rules += role.get("rules") or []
        return rules

    def can(self, subject: Subject, verb: str, group: str, resource: str, namespace: str | None,
            name: str | None = None) -> bool:
        """Whether ``subject`` may ``verb`` the ``group``/``resource`` in ``namespace`` (None: cluster scope)."""
        for rule in self._rules_for(subject, namespace):
            if (group in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) \
                    and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) \
                    and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])) \
                    and (not rule.get("resourceNames") or name in rule["resourceNames"]):
                return True
        return False
