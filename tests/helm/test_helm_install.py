"""Install, upgrade and uninstall the chart with the real Helm library into the Kubernetes API emulator.

Helm applies the CRDs and templates server-side (with strict field validation, which the emulator checks
against the Kubernetes 1.30 schemas), so this catches manifests an API server would refuse.
"""

import pathlib
import sys
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
from helm_support import CHART, NAMESPACE, RELEASE, REPO

sys.path.insert(0, str(REPO / "tests" / "k8s"))

from k8s_emulator.client import KubeClient  # noqa: E402
from k8s_emulator.server import EmulatorThread  # noqa: E402


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[tuple[helm.Config, KubeClient]]:
    with EmulatorThread(namespaces=[NAMESPACE, "team-a", "team-b"]) as k8s:
        config = helm.Config(kubeconfig_path=str(k8s.write_kubeconfig(tmp_path / "kubeconfig")),
                             namespace=NAMESPACE, storage_driver="memory")
        client = KubeClient(k8s)
        yield config, client
        client.close()


def _names(client: KubeClient, api_version: str, kind: str, namespace: str | None = None) -> list[str]:
    return sorted(o["metadata"]["name"] for o in client.list(api_version, kind, namespace)["items"])


def _args(client: KubeClient) -> list[str]:
    deployment = client.get("apps/v1", "Deployment", "ck-codekiln", NAMESPACE)
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def _install(config: helm.Config, values: dict[str, Any]) -> dict[str, Any]:
    return config.install(helm.Chart.load(CHART), RELEASE, values, namespace=NAMESPACE, timeout=60)


def test_install_upgrade_uninstall(cluster: tuple[helm.Config, KubeClient]) -> None:
    config, client = cluster
    release = _install(config, {"watch": {"namespaces": ["team-a"]}})
    assert release["status"] == "deployed"
    assert _names(client, "apiextensions.k8s.io/v1", "CustomResourceDefinition") == [
        "datapipelines.codekiln.dev", "pretrainruns.codekiln.dev", "rlruns.codekiln.dev", "sandboxpools.codekiln.dev"]
    assert client.http.get("/apis/codekiln.dev/v1alpha1/namespaces/team-a/pretrainruns").status_code == 200
    assert _args(client)[-2:] == ["--namespace", "team-a"]
    assert _names(client, "rbac.authorization.k8s.io/v1", "Role", "team-a") == [
        "ck-codekiln-operator", "codekiln-workload-progress"]
    service = client.get("v1", "Service", "ck-codekiln-metrics", NAMESPACE)
    assert service["spec"]["clusterIP"]  # defaulted by the API server

    upgraded = config.upgrade(helm.Chart.load(CHART), RELEASE, {"watch": {"namespaces": ["team-a", "team-b"]}},
                              namespace=NAMESPACE, timeout=60)
    assert upgraded["revision"] == 2
    assert _args(client)[-4:] == ["--namespace", "team-a", "--namespace", "team-b"]
    assert "ck-codekiln-operator" in _names(client, "rbac.authorization.k8s.io/v1", "Role", "team-b")

    config.uninstall(RELEASE)
    assert _names(client, "apps/v1", "Deployment", NAMESPACE) == []
    assert _names(client, "rbac.authorization.k8s.io/v1", "Role", "team-a") == []
    assert len(_names(client, "apiextensions.k8s.io/v1", "CustomResourceDefinition")) == 4  # Helm keeps CRDs


def test_cluster_wide_install_with_service_monitor_needs_the_prometheus_crd(
        cluster: tuple[helm.Config, KubeClient]) -> None:
    config, client = cluster
    values = {"watch": {"allNamespaces": True}, "metrics": {"serviceMonitor": {"enabled": True}}}
    with pytest.raises(helm.HelmError):  # no monitoring.coreos.com in this cluster: refused, as in a real one
        _install(config, values)
    assert _names(client, "apps/v1", "Deployment", NAMESPACE) == []
    client.k8s.call(client.k8s.emulator.register_resource, "monitoring.coreos.com/v1/servicemonitors",
                    kind="ServiceMonitor")
    assert _install(config, values)["status"] == "deployed"
    assert "--all-namespaces" in _args(client)
    assert _names(client, "monitoring.coreos.com/v1", "ServiceMonitor", NAMESPACE) == ["ck-codekiln"]
    assert "ck-codekiln-operator" in _names(client, "rbac.authorization.k8s.io/v1", "ClusterRole")
