"""The Grafana dashboard queries metrics that exist, named per Prometheus conventions."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Histogram

from codekiln.operator import metrics as operator_metrics
from codekiln.workloads.sandbox.metrics import SandboxMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "codekiln-dashboard.json").read_text())
SERIES = re.compile(r"\b(codekiln_[a-z0-9_]+)\b")


def _exposed(registry) -> set[str]:
    names: set[str] = set()
    for collector in list(registry._collector_to_names):
        for family in collector.describe():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
            else:
                names.add(family.name)
    return names


def workload_series() -> set[str]:
    """Series the workloads expose (train/rl gauges are created lazily; their names come from the modules)."""
    names = _exposed(operator_metrics.REGISTRY) | _exposed(SandboxMetrics().registry)
    train = (ROOT / "workloads" / "train" / "metrics.py").read_text()
    gauges = re.search(r"GAUGE_NAMES = \(([^)]*)\)", train).group(1)
    renamed = {"mfu": "codekiln_train_mfu_ratio", "tokens": "codekiln_train_tokens_total"}
    assert '"tokens": "codekiln_train_tokens"' in train and 'COUNTERS = ("tokens",)' in train  # a Counter
    names |= {renamed.get(n, f"codekiln_train_{n}") for n in re.findall(r'"(\w+)"', gauges)}
    rl = (ROOT / "workloads" / "rl" / "metrics.py").read_text()
    names |= set(re.findall(r'"(codekiln_rl_\w+)"', rl))
    assert 'Counter("codekiln_data_documents_written"' in (ROOT / "workloads" / "data" / "__main__.py").read_text()
    names.add("codekiln_data_documents_written_total")
    return names


def test_every_dashboard_query_uses_an_exposed_series():
    exposed = workload_series()
    queried = {name for panel in DASHBOARD["panels"] for target in panel["targets"]
               for name in SERIES.findall(target["expr"]) if name not in ("codekiln_resource", "codekiln_kind")}
    assert queried and queried <= exposed, sorted(queried - exposed)
    titles = " ".join(p["title"] for p in DASHBOARD["panels"]).lower()
    for topic in ("phase", "progress", "loss", "reward", "tokens/s", "sandbox request latency", "queue", "restarts"):
        assert topic in titles, topic


def test_metric_names_follow_prometheus_conventions():
    for collector in list(operator_metrics.REGISTRY._collector_to_names):
        if isinstance(collector, Histogram):
            assert collector._name.endswith("_seconds"), collector._name  # units in the name
    counters = [c for c in operator_metrics.REGISTRY._collector_to_names if isinstance(c, Counter)]
    assert counters and all(f.type == "counter" for c in counters for f in c.describe())  # exposed as *_total
    exposed = workload_series()
    assert "codekiln_train_mfu" not in exposed and "codekiln_rl_pass_rate" not in exposed  # ratios end in _ratio
    assert "codekiln_train_tokens" not in exposed  # cumulative: a counter
