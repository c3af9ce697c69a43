"""Local runner of a SandboxPool: ``codekiln run --local -f examples/sandboxpool.yaml``."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from codekiln.workloads.sandbox.config import SandboxConfig


def run_local(resource: dict) -> int:
    """Serve the pool's ``spec.sandbox`` on this machine until Ctrl-C (one replica, whatever ``spec.replicas``)."""
    spec = resource.get("spec") or {}
    try:
        config = SandboxConfig.model_validate(spec.get("sandbox") or {})
    except ValidationError as exc:
        for err in exc.errors():
            print(f"error: spec.sandbox.{'.'.join(map(str, err['loc']))}: {err['msg']}", file=sys.stderr)
        return 2
    name = (resource.get("metadata") or {}).get("name", "sandboxpool")
    replicas = spec.get("replicas", 1)
    print(f"SandboxPool {name}: serving locally on http://{config.host}:{config.port} "
          f"(1 local server; the cluster runs {replicas} replicas). Ctrl-C stops.", file=sys.stderr)
    from codekiln.workloads.sandbox.server import serve_until_stopped

    return serve_until_stopped(config, exit_on_failed_check=True)
