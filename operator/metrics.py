"""Operator metrics (prometheus-client), served by :func:`serve` on the port the chart exposes.

- ``codekiln_operator_reconciles_total{kind,result}``: result is success, invalid, conflict or error
- ``codekiln_operator_reconcile_duration_seconds{kind}``: latency of one reconcile pass
- ``codekiln_operator_resources{kind,phase}``: resources currently in each phase
- ``codekiln_operator_gang_restarts_total{kind,cause}``: whole-gang restarts; cause is failure or disruption
- ``codekiln_operator_api_requests_total{method}``: API requests of the reconciler (not kopf's watches)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
RECONCILES = Counter("codekiln_operator_reconciles", "Reconcile passes by kind and result.",
                     ["kind", "result"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram("codekiln_operator_reconcile_duration_seconds", "Latency of one reconcile pass.",
                              ["kind"], registry=REGISTRY,
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RESOURCES = Gauge("codekiln_operator_resources", "Resources by kind and phase.", ["kind", "phase"],
                  registry=REGISTRY)
GANG_RESTARTS = Counter("codekiln_operator_gang_restarts", "Whole-gang restarts by cause (failure, disruption).",
                        ["kind", "cause"], registry=REGISTRY)
API_REQUESTS = Counter("codekiln_operator_api_requests", "Requests the reconciler sent to the API server.",
                       ["method"], registry=REGISTRY)
PHASES = ("Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed")


class PhaseTracker:
    """Keeps ``codekiln_operator_resources`` equal to the phases last seen per resource."""

    def __init__(self) -> None:
        self._phases: dict[tuple[str, str, str], str] = {}

    def set(self, key: tuple[str, str, str], phase: str | None) -> None:
        phase = phase or "Pending"
        old = self._phases.get(key)
        if old == phase:
            return
        if old is not None:
            RESOURCES.labels(key[0], old).dec()
        RESOURCES.labels(key[0], phase).inc()
        self._phases[key] = phase

    def forget(self, key: tuple[str, str, str]) -> None:
        old = self._phases.pop(key, None)
        if old is not None:
            RESOURCES.labels(key[0], old).dec()

    def clear(self) -> None:
        for key in list(self._phases):
            self.forget(key)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on ``port`` (a background thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)


def sample(name: str, **labels: str) -> float:
    """Current value of one sample (tests and the benchmark read metrics through this)."""
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value
