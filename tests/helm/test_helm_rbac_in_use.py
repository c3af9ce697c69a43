"""The chart's RBAC allows every API call the real operator makes (recorded by the emulator), and no more is used.

The operator (kopf + codekiln handlers) runs against the Kubernetes API emulator with one resource of each
kind; every request it sends is mapped to an RBAC (verb, resource, namespace) and checked against the Roles
the chart renders for the operator's ServiceAccount.
"""

import pathlib
import sys
import time
from typing import Any

import pytest
import yaml
from helm_support import NAMESPACE, REPO, Rbac, Subject, render

sys.path.insert(0, str(REPO / "tests" / "k8s"))

from k8s_emulator.client import KubeClient  # noqa: E402
from k8s_emulator.server import EmulatorThread  # noqa: E402
from kopf.testing import KopfRunner  # noqa: E402

from codekiln.operator import handlers  # noqa: E402,F401  (registers the operator's handlers with kopf)
from codekiln.operator.crds import build_crds  # noqa: E402

WATCHED = "team-a"
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


def _rbac_request(request: Any) -> tuple[str, str, str, str | None] | None:
    """(verb, apiGroup, resource[/subresource], namespace) of a resource request; None for discovery."""
    res = request.resource
    if res is None or res.plural is None or res.version is None:
        return None
    method = request.method.value
    if method == "GET":
        verb = "watch" if request.params.get("watch") in ("true", "1") else "get" if request.name else "list"
    elif method == "DELETE":
        verb = "delete" if request.name else "deletecollection"
    else:
        verb = VERBS[method]
    resource = f"{res.plural}/{request.subresource}" if request.subresource else res.plural
    return verb, res.group, resource, request.namespace


def _wait(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        time.sleep(0.2)


@pytest.fixture
def recorded_calls(tmp_path: pathlib.Path) -> set[tuple[str, str, str, str | None]]:
    with EmulatorThread(crds=build_crds(), namespaces=[WATCHED], bookmark_interval=1.0) as k8s:
        k8s.emulator.request_history = 1_000_000
        k8s.activate(tmp_path / "kubeconfig")
        client = KubeClient(k8s)
        examples = sorted((REPO / "examples").glob("*.yaml"))
        docs = [next(d for d in yaml.safe_load_all(p.read_text()) if d) for p in examples]
        for doc in docs:  # start every run now (their spec.after chain would hold the gangs back)
            doc["spec"].pop("after", None)
        with KopfRunner(["run", "--standalone", "--namespace", WATCHED, "-m", "codekiln.operator.handlers"],
                        timeout=90) as runner:
            for doc in docs:
                client.create(doc, WATCHED)
            _wait(lambda: len(client.list("batch/v1", "Job", WATCHED)["items"]) >= 2)
            _wait(lambda: client.list("apps/v1", "Deployment", WATCHED)["items"])
            first = docs[0]
            client.delete(first["apiVersion"], first["kind"], first["metadata"]["name"], WATCHED)
            _wait(lambda: first["metadata"]["name"] not in {  # (examples/ may hold several of one kind)
                o["metadata"]["name"] for o in client.list(first["apiVersion"], first["kind"], WATCHED)["items"]})
            time.sleep(1.0)
        assert runner.exit_code == 0, runner.output
        client.close()
        requests = k8s.call(lambda: list(k8s.emulator._requests))
    return {call for r in requests if "kopf" in r.headers.get("User-Agent", "") or
            "httpx" not in r.headers.get("User-Agent", "") if (call := _rbac_request(r)) is not None}


def test_operator_calls_are_all_allowed_by_the_chart(recorded_calls: set) -> None:
    rbac = Rbac(render({"watch": {"namespaces": [WATCHED]}}))
    operator = Subject(NAMESPACE, "ck-codekiln")
    denied = sorted(c for c in recorded_calls if not rbac.can(operator, c[0], c[1], c[2], c[3]))
    assert denied == [], f"the chart's RBAC denies calls the operator makes: {denied}"
    verbs = {(verb, resource) for verb, _, resource, _ in recorded_calls}
    expected = {("create", "jobs"), ("create", "deployments"), ("create", "networkpolicies"), ("watch", "pretrainruns"),
                ("patch", "pretrainruns/status"), ("list", "customresourcedefinitions"), ("create", "events")}
    assert expected <= verbs, verbs
