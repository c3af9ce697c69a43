"""Local runs of a DataPipeline: every stage in order, shards as processes, rich progress and a stats table."""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from codekiln.workloads import contract
from codekiln.workloads.atomic_io import atomic_write_text
from codekiln.workloads.data.base import StepStats
from codekiln.workloads.data.config import DataPipelineConfig
from codekiln.workloads.data.executor import run_shard
from codekiln.workloads.data.registry import StepConfigError
from codekiln.workloads.data.storage import is_url, join, write_bytes
from codekiln.workloads.progress import progress_reporter
from codekiln.workloads.schema import error_lines

PROCESSES_ENV = contract.ENV_DATA_PROCESSES


def parse_pipeline(resource: dict) -> DataPipelineConfig:
    """``spec.pipeline`` of a DataPipeline resource, validated (steps included)."""
    try:
        config = DataPipelineConfig.model_validate(resource["spec"]["pipeline"])
    except KeyError as exc:
        raise StepConfigError(f"resource has no spec.pipeline ({exc})") from None
    except ValidationError as exc:
        raise StepConfigError("; ".join(error_lines(exc, ("spec", "pipeline")))) from None
    return config


def _shard_job(config_json: str, stage: str, rank: int) -> tuple[int, list[dict], bool]:
    config = DataPipelineConfig.model_validate_json(config_json)
    stats, skipped = run_shard(config, stage, rank)
    return rank, [s.to_dict() for s in stats], skipped


class _StageTracker:
    """Merges shard stats of one stage and drives its progress bar."""

    def __init__(self, progress: Progress, task) -> None:
        self.progress, self.task = progress, task
        self.merged: list[StepStats] = []
        self.skipped = 0

    def finish(self, stats: list[StepStats], skipped: bool) -> None:
        if not self.merged:
            self.merged = [StepStats(s.name) for s in stats]
        for m, s in zip(self.merged, stats, strict=True):
            m.merge(s)
        self.skipped += skipped
        resumed = f" ({self.skipped} resumed)" if self.skipped else ""
        self.progress.update(self.task, advance=1, info=f"docs out {self.merged[-1].docs_out:,}{resumed}")

    def on_doc(self, rank: int):
        def update(n: int) -> None:
            if n % 200 == 0:
                self.progress.update(self.task, info=f"shard {rank}: {n:,} docs")

        return update


def run_pipeline(
    config: DataPipelineConfig, *, processes: int = 1, console: Console | None = None
) -> dict[str, list[StepStats]]:
    """Run all stages in order; returns merged per-step stats per stage (also written to ``stats.json``)."""
    console = console or Console(stderr=True)
    reporter = progress_reporter()
    totals: dict[str, list[StepStats]] = {}
    plan = config.plan()
    total_shards = sum(s.shards for s in plan)
    done_shards = 0
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    stage_times: dict[str, float] = {}  # wall seconds per stage (this run; resumed shards are fast)
    with Progress(*columns, console=console, transient=False) as progress:
        for stage in plan:
            stage_t0 = time.perf_counter()
            tracker = _StageTracker(progress, progress.add_task(stage.name, total=stage.shards, info=""))
            if processes > 1 and stage.shards > 1:
                with ProcessPoolExecutor(max_workers=min(processes, stage.shards)) as pool:
                    wire = config.model_dump_json(by_alias=True, exclude_none=True)
                    futures = [pool.submit(_shard_job, wire, stage.name, r) for r in range(stage.shards)]
                    for fut in as_completed(futures):
                        _, stats, skipped = fut.result()
                        tracker.finish([StepStats.from_dict(s) for s in stats], skipped)
                        done_shards += 1
                        reporter.update(step=done_shards, total_steps=total_shards, stage=stage.name)
            else:
                for rank in range(stage.shards):
                    stats, skipped = run_shard(config, stage.name, rank, on_doc=tracker.on_doc(rank))
                    tracker.finish(stats, skipped)
                    done_shards += 1
                    reporter.update(step=done_shards, total_steps=total_shards, stage=stage.name)
            totals[stage.name] = tracker.merged
            stage_times[stage.name] = round(time.perf_counter() - stage_t0, 2)
    stats = {k: [s.to_dict() for s in v] for k, v in totals.items()}
    _write_out(config.output_dir, "stats.json", json.dumps(stats, indent=1))
    _write_out(config.output_dir, "stage_times.json", json.dumps(stage_times, indent=1))
    reporter.update(force=True, step=total_shards, total_steps=total_shards, message="pipeline finished")
    return totals


def _write_out(output_dir: str, name: str, text: str) -> None:
    """A run-level file under ``outputDir`` (local: atomic rename; URL: one PUT)."""
    if is_url(output_dir):
        write_bytes(join(output_dir, name), text.encode("utf-8"))
    else:
        atomic_write_text(Path(output_dir) / name, text)


def stats_table(totals: dict[str, list[StepStats]]) -> Table:
    """One row per block: documents and bytes in/out, time, rejects by reason."""
    table = Table(title="DataPipeline blocks")
    for col in ("stage", "block", "docs in", "docs out", "MB in", "MB out", "time s", "rejects by reason"):
        table.add_column(col, justify="right" if col not in ("stage", "block", "rejects by reason") else "left")
    counters = any(s.counters for steps in totals.values() for s in steps)  # e.g. LLM tokens of synthesis steps
    if counters:
        table.add_column("counters", justify="left")
    for stage, steps in totals.items():
        for s in steps:
            rejects = ", ".join(f"{k}={v:,}" for k, v in s.rejects.most_common())
            table.add_row(
                stage,
                s.name,
                f"{s.docs_in:,}",
                f"{s.docs_out:,}",
                f"{s.bytes_in / 1e6:.2f}",
                f"{s.bytes_out / 1e6:.2f}",
                f"{s.time_s:.2f}",
                rejects,
                *([", ".join(f"{k}={v:,}" for k, v in sorted(s.counters.items()))] if counters else []),
            )
    return table


def run_local(resource: dict) -> int:
    """Entry for ``codekiln run --local``: run every stage, print the stats table; 0 on success."""
    console = Console(stderr=True)
    try:
        config = parse_pipeline(resource)
    except StepConfigError as exc:
        console.print(f"[red]invalid DataPipeline {resource.get('metadata', {}).get('name', '?')}:[/red] {exc}")
        return 2
    processes = int(os.environ.get(PROCESSES_ENV, min(2, os.cpu_count() or 1)))
    try:
        totals = run_pipeline(config, processes=processes, console=console)
    except (StepConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        console.print(f"[red]DataPipeline failed:[/red] {exc}")
        return 1
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)
    out.print(stats_table(totals))
    where = config.output_dir if is_url(config.output_dir) else Path(config.output_dir).resolve()
    print(f"outputs in {where}", file=sys.stderr)
    return 0
