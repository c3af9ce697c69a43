"""Prometheus metrics of one sandbox server (own registry, so several servers fit in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass
class SandboxMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.runs = Counter("codekiln_sandbox_runs_total", "Executions by language and verdict.",
                            ["language", "phase", "verdict"], registry=r)
        self.latency = Histogram("codekiln_sandbox_request_seconds", "Request latency (queue + execution).",
                                 ["endpoint", "language"], buckets=LATENCY_BUCKETS, registry=r)
        self.exec_seconds = Histogram("codekiln_sandbox_execution_seconds", "Wall time of one execution.",
                                      ["language", "phase"], buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("codekiln_sandbox_queue_depth", "Requests admitted but waiting for a slot.",
                                 registry=r)
        self.in_flight = Gauge("codekiln_sandbox_requests_in_flight", "Requests admitted (running or queued).",
                               registry=r)
        self.busy = Gauge("codekiln_sandbox_busy_slots", "Execution slots in use.", registry=r)
        self.sessions_live = Gauge("codekiln_sandbox_sessions_live", "Live sandbox sessions.", registry=r)
        self.session_commands = Counter("codekiln_sandbox_session_commands_total", "Commands run in sessions.",
                                        registry=r)
        self.sessions_reaped = Counter("codekiln_sandbox_sessions_reaped_total",
                                       "Sessions closed by the server (ttl, idle, dead sandbox).", ["reason"],
                                       registry=r)
        self.rejections = Counter("codekiln_sandbox_rejections_total", "Requests refused.", ["reason"], registry=r)
