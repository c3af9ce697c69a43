"""Run the operator: ``codekiln operator`` calls :func:`run_operator`.

Importing :mod:`codekiln.operator.handlers` registers the handlers; :func:`run_operator`
starts the metrics server and runs kopf standalone (one replica, no peering, ``Recreate``).
"""

from __future__ import annotations

import logging

import kopf

from codekiln.operator import handlers, metrics

log = logging.getLogger("codekiln.operator")


def run_operator(namespaces: list[str], all_namespaces: bool, metrics_port: int | None,
                 liveness_port: int | None) -> int:
    """Serve until interrupted; returns the process exit code.

    Args:
        namespaces: namespaces to watch (ignored with ``all_namespaces``).
        all_namespaces: watch the whole cluster.
        metrics_port: serve Prometheus ``/metrics`` here (None or 0: off).
        liveness_port: serve kopf's ``/healthz`` here (None or 0: off).
    """
    if not namespaces and not all_namespaces:
        log.error("nothing to watch: give --namespace NS (repeatable) or --all-namespaces")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
