"""In-pod entry: ``python -m codekiln.workloads.rl --config /etc/codekiln/resource.json`` (under torchrun)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from codekiln.workloads.progress import add_log_arguments, setup_logging
from codekiln.workloads.rl.runner import run_local


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codekiln.workloads.rl", description=__doc__)
    parser.add_argument("--config", required=True, help="RLRun resource JSON (wire form)")
    add_log_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_format)
    try:
        with open(args.config) as fh:
            resource = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"--config {args.config}: cannot read the resource ({exc})", file=sys.stderr)
        return 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return run_local(resource)


if __name__ == "__main__":
    sys.exit(main())
