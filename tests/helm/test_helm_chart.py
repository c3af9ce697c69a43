"""The Helm chart: lint and render with the real Helm library, strict validation, RBAC and wiring checks."""

import json
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from helm_support import CHART, NAMESPACE, REPO, Rbac, Subject, chart_crds, find, render

from codekiln.operator.builders import seccomp_profile
from codekiln.operator.cli import build_parser, cmd_operator
from codekiln.operator.reconcile.children import OWNED_KINDS

VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaces": {"watch": {"namespaces": ["team-a", "team-b"]}, "image": {"tag": "0.2.0", "pullPolicy": "Always"},
                   "imagePullSecrets": [{"name": "regcred"}], "metrics": {"service": {"enabled": False}}},
    "cluster-wide": {"watch": {"allNamespaces": True}, "rbac": {"volcano": True},
                     "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
                     "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
                     "nodeSelector": {"kubernetes.io/os": "linux"},
                     "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
                     "operator": {"extraEnv": [{"name": "TZ", "value": "UTC"}]}},
    "external-sa": {"serviceAccount": {"create": False, "name": "preexisting"}, "workloadRbac": {"create": False},
                    "liveness": {"port": 8181}, "metrics": {"port": 9191, "service": {"port": 80}}},
    "seccomp-installer": {"sandboxSeccomp": {"install": True, "kubeletSeccompDir": "/var/lib/k0s/kubelet/seccomp",
                                             "nodeSelector": {"codekiln.dev/sandbox": "true"}}},
}
OPERATOR = Subject(NAMESPACE, "ck-codekiln")


def _operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_lint_is_clean(variant: str) -> None:
    report = helm.lint(CHART, VARIANTS[variant], strict=True, kube_version="v1.30.0", namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_every_manifest_validates_strictly(variant: str, version: str) -> None:
    docs = render(VARIANTS[variant])
    assert docs
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":  # a Prometheus-operator CRD: no bundled schema, checked below
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, version, strict=True)
            continue
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
def test_crds_validate_strictly(version: str) -> None:
    crds = chart_crds()
    assert len(crds) == 4
    for crd in crds:
        kubernetes_validate.validate(crd, version, strict=True)


def test_chart_crds_are_the_repository_crds() -> None:
    repo = sorted((REPO / "crds").glob("*.yaml"))
    chart = sorted((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in chart] == [p.name for p in repo]
    for ours, theirs in zip(chart, repo, strict=True):
        assert ours.read_bytes() == theirs.read_bytes(), f"{ours} differs from {theirs}: run `codekiln crds`"
    # What Helm actually loads from the chart is what the repository ships (freshness vs. build_crds() is
    # checked in tests/foundation/test_crds.py).
    shipped = {c["metadata"]["name"]: c for c in (yaml.safe_load(p.read_text()) for p in repo)}
    assert {c["metadata"]["name"]: c for c in chart_crds()} == shipped
    assert set(shipped) == {f"{p}.codekiln.dev" for p in ("datapipelines", "pretrainruns", "rlruns", "sandboxpools")}


def test_deployment_runs_one_operator_with_recreate_liveness_and_metrics() -> None:
    docs = render()
    (deployment,) = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = _operator_container(docs)
    assert container["command"] == ["codekiln"]
    assert container["args"] == ["operator", "--metrics-port", "9090", "--liveness-port", "8080",
                                 "--namespace", NAMESPACE]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9090, "healthz": 8080}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    assert container["image"] == "ghcr.io/codekiln/operator:0.1.0"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR.name and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_watched_namespaces_become_flags_and_roles() -> None:
    docs = render(VARIANTS["namespaces"])
    args = _operator_container(docs)["args"]
    assert args[-4:] == ["--namespace", "team-a", "--namespace", "team-b"]
    assert _operator_container(docs)["image"] == "ghcr.io/codekiln/operator:0.2.0"
    assert sorted(r["metadata"]["namespace"] for r in find(docs, "Role", "ck-codekiln-operator")) == \
        ["team-a", "team-b"]
    assert find(docs, "ClusterRole", "ck-codekiln-operator") == []
    assert find(docs, "Service") == []


def test_all_namespaces_mode_uses_a_cluster_role() -> None:
    docs = render(VARIANTS["cluster-wide"])
    assert "--all-namespaces" in _operator_container(docs)["args"]
    assert "--namespace" not in _operator_container(docs)["args"]
    assert find(docs, "Role") == [] and len(find(docs, "ClusterRole")) == 2
    rbac = Rbac(docs)
    assert rbac.can(OPERATOR, "create", "batch", "jobs", "anywhere")
    assert rbac.can(OPERATOR, "create", "scheduling.volcano.sh", "podgroups", "anywhere")


@pytest.mark.parametrize("variant", ["default", "namespaces", "cluster-wide"])
def test_operator_rbac_covers_what_it_does_and_no_more(variant: str) -> None:
    docs = render(VARIANTS[variant])
    rbac = Rbac(docs)
    watched = (VARIANTS[variant].get("watch") or {}).get("namespaces") or [NAMESPACE]
    for ns in watched:
        for plural in ("datapipelines", "pretrainruns", "rlruns", "sandboxpools"):
            for verb in ("get", "list", "watch", "patch"):
                assert rbac.can(OPERATOR, verb, "codekiln.dev", plural, ns), (verb, plural, ns)
            assert rbac.can(OPERATOR, "patch", "codekiln.dev", f"{plural}/status", ns)
            assert not rbac.can(OPERATOR, "create", "codekiln.dev", plural, ns)
            assert not rbac.can(OPERATOR, "delete", "codekiln.dev", plural, ns)
        for api_version, kind in OWNED_KINDS:  # every kind the reconciler creates and cleans up
            group = api_version.rpartition("/")[0]
            plural = {"NetworkPolicy": "networkpolicies"}.get(kind, kind.lower() + "s")
            for verb in ("get", "list", "create", "patch", "delete"):
                assert rbac.can(OPERATOR, verb, group, plural, ns), (verb, kind, ns)
        assert rbac.can(OPERATOR, "list", "", "pods", ns) and rbac.can(OPERATOR, "watch", "", "pods", ns)
        assert not rbac.can(OPERATOR, "create", "", "pods", ns)
        assert rbac.can(OPERATOR, "delete", "", "pods", ns)  # replaces sandbox pods stuck unready
        assert rbac.can(OPERATOR, "create", "", "events", ns)
        assert not rbac.can(OPERATOR, "get", "", "secrets", ns)
        assert not rbac.can(OPERATOR, "create", "", "pods/exec", ns)
    assert rbac.can(OPERATOR, "watch", "apiextensions.k8s.io", "customresourcedefinitions", None)
    assert rbac.can(OPERATOR, "list", "", "namespaces", None)
    assert not rbac.can(OPERATOR, "delete", "apiextensions.k8s.io", "customresourcedefinitions", None)
    if variant != "cluster-wide":
        assert not rbac.can(OPERATOR, "create", "batch", "jobs", "kube-system")
    for doc in docs:
        for rule in doc.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)
    bound = {(b["kind"], b["roleRef"]["name"]) for b in docs if b["kind"].endswith("Binding")}
    for kind, name in bound:
        role_kind = "ClusterRole" if kind == "ClusterRoleBinding" else None
        assert find(docs, role_kind or "Role", name) or find(docs, "ClusterRole", name), name


def test_workload_service_account_may_only_patch_status() -> None:
    docs = render(VARIANTS["namespaces"])
    rbac = Rbac(docs)
    for ns in ("team-a", "team-b"):
        workload = Subject(ns, "codekiln-workload")
        assert find(docs, "ServiceAccount", "codekiln-workload")
        assert rbac.can(workload, "patch", "codekiln.dev", "pretrainruns/status", ns)
        assert rbac.can(workload, "get", "codekiln.dev", "rlruns/status", ns)
        assert not rbac.can(workload, "patch", "codekiln.dev", "pretrainruns", ns)
        assert not rbac.can(workload, "list", "", "pods", ns)
    assert not rbac.can(Subject("team-a", "codekiln-workload"), "patch", "codekiln.dev", "rlruns/status", "team-b")


def test_metrics_service_and_service_monitor_select_the_operator() -> None:
    docs = render(VARIANTS["cluster-wide"])
    (deployment,) = find(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (service,) = find(docs, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert find(render(), "ServiceMonitor") == []


def test_pod_monitor_scrapes_the_workload_pods_the_operator_builds() -> None:
    """Off by default; when on, its selector matches gang, shard and sandbox pods and names their metric ports."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "operator"))
    from operator_factories import resource

    from codekiln.operator.builders.children import render_all

    assert find(render(), "PodMonitor") == []
    (monitor,) = find(render({"metrics": {"podMonitor": {"enabled": True, "labels": {"release": "prom"}}},
                              "watch": {"namespaces": ["team-a", "team-b"]}}), "PodMonitor")
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    assert monitor["metadata"]["labels"]["release"] == "prom"
    (cluster_wide,) = find(render({"metrics": {"podMonitor": {"enabled": True}}, "watch": {"allNamespaces": True}}),
                           "PodMonitor")
    assert cluster_wide["spec"]["namespaceSelector"] == {"any": True}
    ports = {e["port"] for e in spec["podMetricsEndpoints"]}
    wanted = {k: v for k, v in spec["selector"]["matchLabels"].items()}
    (expression,) = spec["selector"]["matchExpressions"]
    for kind in ("PretrainRun", "RLRun", "DataPipeline", "SandboxPool"):
        (workload,) = [m for m in render_all(resource(kind)) if m["kind"] in ("Job", "Deployment")][:1]
        template = workload["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert wanted.items() <= labels.items() and labels[expression["key"]] in expression["values"], kind
        container_ports = {p["name"] for p in template["spec"]["containers"][0]["ports"]}
        assert container_ports & ports, (kind, container_ports)


def test_non_default_ports_and_external_service_account() -> None:
    docs = render(VARIANTS["external-sa"])
    container = _operator_container(docs)
    assert container["args"][:5] == ["operator", "--metrics-port", "9191", "--liveness-port", "8181"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9191, "healthz": 8181}
    assert find(docs, "ServiceAccount") == []
    (deployment,) = find(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "preexisting"
    (service,) = find(docs, "Service")
    assert service["spec"]["ports"][0]["port"] == 80
    assert Rbac(docs).can(Subject(NAMESPACE, "preexisting"), "create", "batch", "jobs", NAMESPACE)


@pytest.mark.parametrize(("values", "words"), [
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"metrics": {"port": 70000}}, "port"),
    ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "namespaces"),
    ({"replicas": 2}, "replicas"),
    ({"metrics": {"serviceMonitor": {"interval": "soon"}}}, "interval"),
    ({"sandboxSeccomp": {"install": True, "kubeletSeccompDir": "seccomp"}}, "kubeletSeccompDir"),
])
def test_invalid_values_are_rejected_naming_the_key(values: dict[str, Any], words: str) -> None:
    with pytest.raises(helm.HelmError) as err:
        render(values)
    assert words in str(err.value)


def test_notes_name_the_watched_namespaces() -> None:
    chart = helm.Chart.load(CHART)
    notes = chart.render(VARIANTS["namespaces"], name="ck", namespace=NAMESPACE, is_install=True)
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert "team-a, team-b" in text
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == ">=1.30.0-0"


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_container_args_parse_with_the_real_cli(variant: str) -> None:
    container = _operator_container(render(VARIANTS[variant]))
    assert container["command"] == ["codekiln"]
    args = build_parser().parse_args(container["args"])
    assert args.func is cmd_operator
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (args.metrics_port, args.liveness_port) == (ports["metrics"], ports["healthz"])
    watch = VARIANTS[variant].get("watch") or {}
    assert args.all_namespaces is bool(watch.get("allNamespaces"))
    assert (args.namespace or []) == ([] if watch.get("allNamespaces") else watch.get("namespaces") or [NAMESPACE])


def test_seccomp_installer_ships_the_generated_profile_to_the_kubelet_dir() -> None:
    assert not find(render(), "DaemonSet")  # off by default
    docs = render(VARIANTS["seccomp-installer"])
    (config_map,) = find(docs, "ConfigMap")
    assert json.loads(config_map["data"]["sandbox.json"]) == seccomp_profile.sandbox_pod_profile()
    (daemon_set,) = find(docs, "DaemonSet")
    pod = daemon_set["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"codekiln.dev/sandbox": "true"} and pod["automountServiceAccountToken"] is False
    host = next(v for v in pod["volumes"] if "hostPath" in v)["hostPath"]
    assert host == {"path": "/var/lib/k0s/kubelet/seccomp", "type": "DirectoryOrCreate"}
    script = pod["initContainers"][0]["args"][0]
    assert f"/host-seccomp/{seccomp_profile.PROFILE_PATH}" in script and "os.replace" in script
