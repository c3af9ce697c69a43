"""``python -m codekiln.workloads.sandbox [serve] [--config resource.json] [--host ...]`` — the in-pod entry."""

from __future__ import annotations

import argparse
import json
import sys

from pydantic import ValidationError

from codekiln.workloads.sandbox.config import SandboxConfig


def load_config(path: str | None, overrides: dict) -> SandboxConfig:
    """A SandboxConfig from a resource JSON/YAML (``spec.sandbox``) or a bare config file, plus CLI overrides."""
    data: dict = {}
    if path:
        with open(path) as fh:
            text = fh.read()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            import yaml

            data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping, got {type(data).__name__}")
        if "spec" in data:
            data = (data.get("spec") or {}).get("sandbox") or {}
    merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return SandboxConfig.model_validate(merged)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codekiln.workloads.sandbox", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.add_argument("--config", help="Resource JSON/YAML (spec.sandbox) or a SandboxConfig file.")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--max-concurrency", type=int)
    parser.add_argument("--max-queue", type=int)
    parser.add_argument("--work-dir")
    parser.add_argument("--exit-on-self-check-failure", action="store_true",
                        help="Exit with code 3 instead of serving 503s when runs cannot be isolated.")
    parser.add_argument("--termination-log", help="Also write that error here (a pod's /dev/termination-log).")
    args = parser.parse_args(argv)
    overrides = {"host": args.host, "port": args.port, "max_concurrency": args.max_concurrency,
                 "max_queue": args.max_queue, "work_dir": args.work_dir}
    try:
        config = load_config(args.config, overrides)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            for err in exc.errors():
                print(f"error: sandbox config: {'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    from codekiln.workloads.sandbox.server import serve_until_stopped

    return serve_until_stopped(config, args.exit_on_self_check_failure, args.termination_log)


if __name__ == "__main__":
    sys.exit(main())
