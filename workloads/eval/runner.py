"""One evaluation pass: benchmarks → results table (JSONL + Markdown), Prometheus gauges, status.progress.

Used by ``codekiln eval`` and by PretrainRun / RLRun at the steps their ``eval`` block names.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codekiln.workloads.eval.config import EvalConfig

SANDBOX_ENV = "CODEKILN_SANDBOX_URL"
_GAUGES: dict[str, Any] = {}


@contextlib.contextmanager
def sandbox_for(cfg: EvalConfig, url: str | None = None) -> Iterator[str | None]:
    """The sandbox URL to score on: ``url``, ``cfg.sandboxUrl``, ``$CODEKILN_SANDBOX_URL``, else a local server."""
    url = url or cfg.sandbox_url or os.environ.get(SANDBOX_ENV)
    if url or not cfg.benchmarks:
        yield url
        return
    from codekiln.workloads.sandbox.local import local_server

    with local_server() as local:
        yield local


def _gauge(name: str, doc: str, labels: tuple[str, ...]):
    from prometheus_client import Gauge

    if name not in _GAUGES:
        _GAUGES[name] = Gauge(name, doc, labels)
    return _GAUGES[name]


def export_metrics(rows: list[dict[str, Any]], out_dir: Path) -> None:
    """Set ``codekiln_eval_score_ratio{benchmark, metric, mode}`` (default registry, served by the run's
    metrics port) and write the same values to ``<out_dir>/metrics.prom`` (node-exporter textfile format)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    doc = "Latest evaluation score in [0, 1] (pass@k, exact match, needle accuracy)"
    live = _gauge("codekiln_eval_score_ratio", doc, ("benchmark", "metric", "mode"))
    registry = CollectorRegistry()
    file_gauge = Gauge("codekiln_eval_score_ratio", doc, ("benchmark", "metric", "mode"), registry=registry)
    for row in rows:
        for metric, value in row.items():
            if (metric.startswith(("pass@", "accuracy")) or metric == "exact_match") and isinstance(value, float):
                live.labels(row["benchmark"], metric, row["mode"]).set(value)
                file_gauge.labels(row["benchmark"], metric, row["mode"]).set(value)
    write_to_textfile(str(out_dir / "metrics.prom"), registry)


def write_table(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to ``results.jsonl`` and rewrite ``results.md`` from all rows so far."""
    from codekiln.workloads.atomic_io import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "results.jsonl").open("a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    every = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    atomic_write_text(out_dir / "results.md", format_table(every))


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: step, benchmark, mode, seed, scores."""
    lines = ["| step | benchmark | mode | n | seed | scores | problems |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        scores = ", ".join(f"{k}={v:.3f}" for k, v in r.items()
                           if (k.startswith(("pass@", "accuracy")) or k == "exact_match") and isinstance(v, float))
        lines.append(f"| {r.get('step', '')} | {r['benchmark']} | {r['mode']} | {r.get('n', 1)} | "
                     f"{r.get('seed', '')} | {scores} | {r.get('problems', r.get('examples', ''))} |")
    return "\n".join(lines) + "\n"


def summary(rows: list[dict[str, Any]]) -> str:
    """One line for ``status.progress.message``: ``eval humaneval pass@1=0.125, fim_line exact_match=0.250``."""
    parts = []
    for r in rows:
        key = next((k for k in ("pass@1", "exact_match", "accuracy") if k in r), None)
        if key:
            parts.append(f"{r['benchmark']} {key}={r[key]:.3f}")
    return "eval " + ", ".join(parts) if parts else "eval: nothing scored"


def run_eval(cfg: EvalConfig, generator, out_dir: str | Path, *, step: int | None = None,
             sandbox_url: str | None = None, context_lengths: list[int] | None = None,
             report_progress: bool = True) -> list[dict[str, Any]]:
    """Run every configured benchmark with ``generator``; write the table and metrics; return the rows.

    Args:
        cfg: the eval block.
        generator: an ``EndpointGenerator`` or ``TorchGenerator``.
        out_dir: results folder (``results.jsonl``, ``results.md``, ``metrics.prom``).
        step: the training step (recorded in each row).
        sandbox_url: sandbox for code benchmarks (see :func:`sandbox_for`).
        context_lengths: the run's sequence lengths (needle default).
        report_progress: put the summary into ``status.progress.message``.
    """
    from codekiln.workloads.eval.code import run_code_benchmark
    from codekiln.workloads.eval.fim import run_fim
    from codekiln.workloads.eval.needle import run_needle

    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    with sandbox_for(cfg, sandbox_url) as url:
        for bench in cfg.benchmarks:
            rows.append(run_code_benchmark(bench, cfg, generator, url).row())
    if cfg.fim is not None:
        rows.append(run_fim(cfg.fim, generator, cfg.seed))
    if cfg.needle is not None:
        lengths = cfg.needle.context_lengths or context_lengths or (
            [generator.context_length] if generator.context_length else [])
        if not lengths:
            raise ValueError("eval.needle.contextLengths: not set and the model's context is unknown")
        ctx = generator.context_length
        rows.append(run_needle(cfg.needle, generator, [n for n in lengths if not ctx or n <= ctx] or
                               [min(lengths)], cfg.seed))
    for row in rows:
        row["step"] = step
        row["time"] = round(time.time() - t0, 2)
        if generator.failures:
            row["generation_failures"] = dict(generator.failures)
    write_table(out_dir, rows)
    export_metrics(rows, out_dir)
    if report_progress:
        from codekiln.workloads.progress import progress_reporter

        progress_reporter().update(message=summary(rows), force=True)
    return rows
