"""Run the operator: ``codekiln operator`` calls :func:`run_operator`.

Importing :mod:`codekiln.operator.handlers` registers the handlers; :func:`run_operator`
starts the metrics server and runs kopf standalone (one replica, no peering, ``Recreate``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import kopf

from codekiln.operator import handlers, metrics

log = logging.getLogger("codekiln.operator")
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(sa_file: Path | None = None, kubeconfig: str | None = None) -> str:
    """The namespace ``kubectl`` would use: the pod's own namespace in a cluster, else the kubeconfig context's.

    Args:
        sa_file: the in-cluster namespace file (default: the service-account mount).
        kubeconfig: kubeconfig path (default: ``$KUBECONFIG`` or ``~/.kube/config``).
    """
    sa_file = sa_file or SERVICE_ACCOUNT_NAMESPACE
    if sa_file.exists():
        return sa_file.read_text().strip() or "default"
    import kubernetes

    path = kubeconfig or (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or None
    try:
        _, current = kubernetes.config.list_kube_config_contexts(config_file=path)
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    return (current or {}).get("context", {}).get("namespace") or "default"


def run_operator(namespaces: list[str], all_namespaces: bool, metrics_port: int | None,
                 liveness_port: int | None) -> int:
    """Serve until interrupted; returns the process exit code.

    Args:
        namespaces: namespaces to watch (ignored with ``all_namespaces``); none: the namespace from the
            in-cluster service account or the kubeconfig's current context, as kubectl picks it.
        all_namespaces: watch the whole cluster.
        metrics_port: serve Prometheus ``/metrics`` here (None or 0: off).
        liveness_port: serve kopf's ``/healthz`` here (None or 0: off).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not namespaces and not all_namespaces:
        namespaces = [default_namespace()]
        log.info("watching namespace %r (from the %s; --namespace NS or --all-namespaces to change)",
                 namespaces[0], "in-cluster service account" if SERVICE_ACCOUNT_NAMESPACE.exists() else "kubeconfig")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per handled event is noise
    if metrics_port:
        metrics.serve(metrics_port)
        log.info("metrics on :%d/metrics", metrics_port)
    liveness = f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None
    assert handlers.startup is not None  # the import above registered every handler
    try:
        kopf.run(standalone=True, clusterwide=all_namespaces, namespaces=[] if all_namespaces else namespaces,
                 liveness_endpoint=liveness)
    except KeyboardInterrupt:
        return 0
    return 0
