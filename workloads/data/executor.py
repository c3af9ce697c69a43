"""Run one shard of one stage: build its steps, stream documents, write outputs atomically, mark done."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from codekiln.workloads.atomic_io import atomic_write_text
from codekiln.workloads.data.base import StageContext, StepStats
from codekiln.workloads.data.config import DataPipelineConfig, PlannedStage
from codekiln.workloads.data.document import AtomicJsonlWriter
from codekiln.workloads.data.registry import build_step
from codekiln.workloads.data.rejects import DROPPED_DIR, RejectsWriter
from codekiln.workloads.data.storage import StageMirror, is_url


def marker_path(output_dir: Path, stage: str, rank: int) -> Path:
    return output_dir / stage / "_markers" / f"shard-{rank:05d}.done"


def find_stage(config: DataPipelineConfig, name: str) -> PlannedStage:
    """The expanded stage ``name`` (a user stage, or one a dedup block expands into)."""
    plan = config.plan()
    for stage in plan:
        if stage.name == name:
            return stage
    raise ValueError(f"--stage {name!r} is not a stage of spec.pipeline ({', '.join(s.name for s in plan)})")


def run_shard(
    config: DataPipelineConfig,
    stage_name: str,
    rank: int,
    *,
    on_doc: Callable[[int], None] | None = None,
) -> tuple[list[StepStats], bool]:
    """Run shard ``rank`` of stage ``stage_name``; returns (per-step stats, skipped).

    A finished shard (marker present) is skipped and its recorded stats returned. The
    documents of the stage land in ``<stage>/data/shard-NNNNN.jsonl``, malformed inputs in
    ``<stage>/rejects/shard-NNNNN.jsonl``; both are renamed into place only when the shard
    succeeds, and the marker (holding the stats) is written last.
    """
    stage = find_stage(config, stage_name)
    if not 0 <= rank < stage.shards:
        raise ValueError(f"shard index {rank} out of range for stage {stage_name!r} with {stage.shards} shards")
    mirror = None
    if is_url(config.output_dir):  # object storage: run on a local mirror, upload on success, marker last
        mirror = StageMirror(config.output_dir)
        rel_marker = f"{stage_name}/_markers/shard-{rank:05d}.done"
        if mirror.marker_exists(rel_marker):
            return [StepStats.from_dict(s) for s in json.loads(mirror.read_marker(rel_marker))["steps"]], True
        (mirror.local / rel_marker).unlink(missing_ok=True)  # only the remote marker counts
        mirror.fetch(skip_stage=stage_name)
        out = mirror.local
    else:
        out = Path(config.output_dir)
    marker = marker_path(out, stage_name, rank)
    if marker.exists():
        return [StepStats.from_dict(s) for s in json.loads(marker.read_text())["steps"]], True
    before = mirror.snapshot() if mirror else {}
    for stale in (out / stage_name).glob(f"**/.shard-{rank:05d}*.tmp-*"):  # left by a killed attempt
        stale.unlink(missing_ok=True)
    ctx = StageContext(
        output_dir=out,
        stage=stage_name,
        rank=rank,
        world_size=stage.shards,
        stage_shards={s.name: s.shards for s in config.plan()},
    )
    steps = [
        build_step(type_name, params, ctx, where=f"stage {stage_name!r} step {i} ")
        for i, (type_name, params) in enumerate(stage.steps)
    ]
    ctx.rejects = AtomicJsonlWriter(out / stage_name / "rejects" / f"shard-{rank:05d}.jsonl")
    ctx.dropped = RejectsWriter(out / stage_name / DROPPED_DIR / f"shard-{rank:05d}.jsonl.gz", stage_name)
    writer = AtomicJsonlWriter(out / stage_name / "data" / f"shard-{rank:05d}.jsonl")
    try:
        docs = iter(())
        for step in steps:
            docs = step(docs, rank, stage.shards)
        for n, doc in enumerate(docs, 1):
            writer.write(doc)
            if on_doc is not None:
                on_doc(n)
    except BaseException:
        writer.discard()
        ctx.rejects.discard()
        ctx.dropped.discard()
        raise
    writer.close()
    ctx.rejects.close()
    ctx.dropped.close()
    stats = [s.stats for s in steps]
    atomic_write_text(marker, json.dumps({"stage": stage_name, "rank": rank, "steps": [s.to_dict() for s in stats]}))
    if mirror is not None:
        mirror.upload_changed(before, last=rel_marker)
    return stats, False
