"""Registry of local runners: kind -> the workload function that runs it on this machine.

Each workload package plugs in by providing ``codekiln.workloads.<pkg>.runner.run_local``
taking the validated resource in wire form (camelCase dict with apiVersion, kind,
metadata, spec) and returning an exit code. Imports are lazy so the control plane
never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

LOCAL_RUNNERS: dict[str, str] = {
    "DataPipeline": "codekiln.workloads.data.runner:run_local",
    "PretrainRun": "codekiln.workloads.train.runner:run_local",
    "RLRun": "codekiln.workloads.rl.runner:run_local",
    "SandboxPool": "codekiln.workloads.sandbox.runner:run_local",
}


# `codekiln sandbox serve ARGS` -> the sandbox server's command line (``main(argv) -> exit code``).
SANDBOX_SERVE = "codekiln.workloads.sandbox.__main__:main"
# `codekiln serve MODEL_DIR ...` / `codekiln eval ...` -> the LLM server / evaluation command lines.
LLM_SERVE = "codekiln.workloads.llm.server:main"
EVAL_MAIN = "codekiln.workloads.eval.cli:main"
AGENT_MAIN = "codekiln.workloads.rl.agent.__main__:main"
DATA_EXPLAIN = "codekiln.workloads.data.rejects:explain_main"


class RunnerUnavailable(RuntimeError):
    """The kind has no local runner (yet), or its optional dependencies are missing."""


def resolve_runner(kind: str) -> Callable[[dict], int]:
    """The local runner of ``kind``."""
    target = LOCAL_RUNNERS.get(kind)
    if target is None:
        raise RunnerUnavailable(f"kind {kind!r} has no local runner")
    return load_entry_point(target, kind)


def load_entry_point(target: str, kind: str) -> Callable:
    """Import ``module:function`` lazily; explain a missing module or optional dependency."""
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise RunnerUnavailable(
                f"kind {kind!r} has no local runner yet ({module_name} is not implemented)"
            ) from exc
        raise RunnerUnavailable(
            f"the {kind} runner needs the optional package {exc.name!r}: pip install 'codekiln[all]'"
        ) from exc
    return getattr(module, func_name)
