"""In-pod entry: ``python -m codekiln.workloads.data --config resource.json --stage NAME [--shard N]``.

The shard index defaults to ``$JOB_COMPLETION_INDEX`` (Indexed Job); the shard count is the stage's ``shards``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from codekiln.workloads import contract
from codekiln.workloads.data.executor import run_shard
from codekiln.workloads.data.registry import StepConfigError
from codekiln.workloads.data.runner import parse_pipeline
from codekiln.workloads.progress import add_log_arguments, progress_reporter, setup_logging


def _doc_reporter(stage: str, rank: int):
    """Progress and (with ``$CODEKILN_METRICS_PORT``) Prometheus counters for the documents a shard writes."""
    reporter = progress_reporter()
    counter = None
    port = os.environ.get(contract.ENV_METRICS_PORT)
    if port:
        from prometheus_client import Counter, start_http_server

        counter = Counter("codekiln_data_documents_written", "Documents written by this shard", ["stage", "shard"])
        start_http_server(int(port))

    def on_doc(n: int) -> None:
        if counter is not None:
            counter.labels(stage, str(rank)).inc()
        if n % 1000 == 0:
            reporter.update(stage=stage, tokens=None, message=f"shard {rank}: {n} documents written")

    return on_doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codekiln.workloads.data", description=__doc__)
    parser.add_argument("--config", required=True, help="resource JSON (a DataPipeline)")
    parser.add_argument("--stage", required=True, help="stage name to run")
    parser.add_argument("--shard", type=int, default=None, help="shard index (default: $JOB_COMPLETION_INDEX or 0)")
    add_log_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_format)
    try:
        with open(args.config, encoding="utf-8") as fh:
            resource = json.load(fh)
        config = parse_pipeline(resource)
        rank = args.shard if args.shard is not None else int(os.environ.get(contract.ENV_JOB_COMPLETION_INDEX, "0"))
        stats, skipped = run_shard(config, args.stage, rank, on_doc=_doc_reporter(args.stage, rank))
    except (OSError, ValueError, StepConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress_reporter().update(force=True, stage=args.stage, message=f"shard {rank} {'skipped' if skipped else 'done'}")
    print(json.dumps({"stage": args.stage, "shard": rank, "skipped": skipped, "steps": [s.to_dict() for s in stats]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
