"""In-pod entry: ``python -m codekiln.workloads.data --config resource.json --stage NAME [--shard N]``.

The shard index defaults to ``$JOB_COMPLETION_INDEX`` (Indexed Job); the shard count is the stage's ``shards``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from codekiln.workloads.data.executor import run_shard
from codekiln.workloads.data.registry import StepConfigError
from codekiln.workloads.data.runner import parse_pipeline
from codekiln.workloads.progress import progress_reporter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codekiln.workloads.data", description=__doc__)
    parser.add_argument("--config", required=True, help="resource JSON (a DataPipeline)")
    parser.add_argument("--stage", required=True, help="stage name to run")
    parser.add_argument("--shard", type=int, default=None, help="shard index (default: $JOB_COMPLETION_INDEX or 0)")
    args = parser.parse_args(argv)
    try:
        with open(args.config, encoding="utf-8") as fh:
            resource = json.load(fh)
        config = parse_pipeline(resource)
        rank = args.shard if args.shard is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
        stats, skipped = run_shard(config, args.stage, rank)
    except (OSError, ValueError, StepConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress_reporter().update(force=True, stage=args.stage, message=f"shard {rank} {'skipped' if skipped else 'done'}")
    print(json.dumps({"stage": args.stage, "shard": rank, "skipped": skipped, "steps": [s.to_dict() for s in stats]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
