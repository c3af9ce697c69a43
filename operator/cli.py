"""The ``codekiln`` command line: crds, validate, run --local, operator, sandbox, serve, eval, version."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codekiln.operator.version import GROUP_VERSION, __version__
from codekiln.workloads import contract

EXIT_OK, EXIT_FAILED, EXIT_INVALID = contract.EXIT_OK, contract.EXIT_FAILED, contract.EXIT_INVALID


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_crds(args: argparse.Namespace) -> int:
    """Write crds/*.yaml (and the Helm chart's copy) from the resource models, and the chart's seccomp profile."""
    from codekiln.operator.crds import write_crds

    for path in write_crds(Path(args.root)):
        print(f"wrote {path}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate resource files; print one line per problem; exit 2 when any is invalid."""
    from codekiln.operator.validation import validate_paths

    status = EXIT_OK
    for result in validate_paths(args.file):
        if result.ok:
            meta = result.resource.metadata
            print(f"{result.source}: {result.resource.kind} {meta.name!r} is valid")
        else:
            status = EXIT_INVALID
            _print_problems(result)
    return status


def _print_problems(result) -> None:
    """One line per problem, prefixed with ``file#document`` unless it already names the file."""
    for line in result.errors:
        _err(line if line.startswith(result.source.split("#")[0]) else f"{result.source}: {line}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the resources of files or folders on this machine (``--local``), in ``spec.after`` order."""
    from codekiln.operator.local_plan import blocked_by, plan_local_run
    from codekiln.operator.runners import RunnerUnavailable, resolve_runner
    from codekiln.operator.validation import validate_paths

    if not args.local:
        _err("codekiln run: only --local is supported; in a cluster use `kubectl apply -f FILE`")
        return EXIT_INVALID
    results = validate_paths(args.file)
    bad = [r for r in results if not r.ok]
    for result in bad:
        _print_problems(result)
    if bad:
        return EXIT_INVALID
    if args.init_from:  # continue the chain from a Hugging Face folder (make demo INIT_FROM=...)
        from codekiln.operator.init_from import apply_init_from

        try:
            results, init_notes = apply_init_from(results, args.init_from)
        except ValueError as exc:
            _err(f"codekiln run: {exc}")
            return EXIT_INVALID
        for result in (r for r in results if not r.ok):
            _print_problems(result)
        if any(not r.ok for r in results):
            return EXIT_INVALID
        for note in init_notes:
            _err(f"codekiln run: --init-from: {note}")
    wire = {(r.resource.kind_name, r.resource.metadata.name): r.wire() for r in results}
    try:
        plan = plan_local_run([r.resource for r in results])
    except ValueError as exc:
        _err(f"codekiln run: {exc}")
        return EXIT_INVALID
    for note in plan.notes:
        _err(f"codekiln run: note: {note}")
    status, not_ok = EXIT_OK, set()
    for resource in plan.order:
        key = (resource.kind_name, resource.metadata.name)
        blocker = blocked_by(resource, not_ok)
        if blocker is not None:
            _err(f"codekiln run: skipping {key[0]} {key[1]!r}: spec.after {blocker[0]} {blocker[1]!r} did not succeed")
            not_ok.add(key)
            continue
        if len(plan.order) > 1:
            _err(f"codekiln run: {key[0]} {key[1]!r}")
        try:
            runner = resolve_runner(resource.kind_name)
        except RunnerUnavailable as exc:
            _err(f"codekiln run: {exc}")
            return EXIT_FAILED
        try:
            code = runner(wire[key])
        except KeyboardInterrupt:
            _err("codekiln run: interrupted")
            return 130
        if code:
            not_ok.add(key)
        status = status or code
    return status


def cmd_operator(args: argparse.Namespace) -> int:
    """Start the kopf operator."""
    from codekiln.operator.app import run_operator

    return run_operator(
        namespaces=args.namespace or [],
        all_namespaces=args.all_namespaces,
        metrics_port=args.metrics_port,
        liveness_port=args.liveness_port,
    )


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    """Serve the sandbox execution API (SandboxFusion-compatible)."""
    from codekiln.operator.runners import SANDBOX_SERVE

    argv = ["serve"]
    for flag in ("config", "host", "port", "max_concurrency", "max_queue", "work_dir"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    return _run_entry_point(SANDBOX_SERVE, "SandboxPool", "codekiln sandbox serve", argv)


def _run_entry_point(target: str, kind: str, command: str, *call_args) -> int:
    """Load a workload's entry point lazily (the operator stays torch-free) and call it with ``call_args``.

    Args:
        target: ``module:function`` (a constant of codekiln.operator.runners).
        kind: what the runner is named in the error when it cannot load.
        command: the command line named in that error (``codekiln serve``).
        call_args: the entry point's arguments.
    """
    from codekiln.operator.runners import RunnerUnavailable, load_entry_point

    try:
        main = load_entry_point(target, kind)
    except RunnerUnavailable as exc:
        _err(f"{command}: {exc}")
        return EXIT_FAILED
    return main(*call_args)


def _forward(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    """Flags set on the command line, as argv for a workload's own parser (repeatable flags repeated)."""
    argv: list[str] = []
    for name in names:
        value = getattr(args, name)
        if value is None or value is False:
            continue
        flag = "-n" if name == "samples_per_task" else f"--{name.replace('_', '-')}"
        for v in value if isinstance(value, list) else [value]:
            argv += [flag] if v is True else [flag, str(v)]
    return argv


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an exported model with OpenAI-compatible /v1/completions and /v1/chat/completions (torch, CPU).

    For GPUs serve the same folder with `vllm serve MODEL_DIR`."""
    from codekiln.operator.runners import LLM_SERVE

    return _run_entry_point(LLM_SERVE, "serve", "codekiln serve",
                            [args.model_dir, *_forward(args, ("host", "port", "model_name", "threads"))])


EVAL_FLAGS = ("model", "base_url", "model_name", "api_key_env", "tokenizer", "config", "benchmark", "limit", "mode",
              "samples_per_task", "k", "temperature", "seed", "max_tokens", "fim", "needle", "sandbox_url", "out")


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a model folder or an OpenAI-compatible endpoint: pass@k (HumanEval, task JSONL) in the sandbox,
    FIM single-line exact match, Needle-in-the-Code; prints the results table."""
    from codekiln.operator.runners import EVAL_MAIN

    return _run_entry_point(EVAL_MAIN, "eval", "codekiln eval", _forward(args, EVAL_FLAGS))


def cmd_data_explain(args: argparse.Namespace) -> int:
    """Why was a file dropped? Reads the run's per-shard audit trail (<stage>/dropped/*.jsonl.gz)."""
    from codekiln.operator.runners import DATA_EXPLAIN

    return _run_entry_point(DATA_EXPLAIN, "data explain", "codekiln data explain", args.run, args.path)


def cmd_agent(args: argparse.Namespace) -> int:
    """Agentic RL data: `codekiln agent generate-tasks --out DIR` makes verified SWE-style tasks from modules on
    disk; `codekiln agent collect --tasks T.jsonl --out traj.jsonl [--policy reference|HF_DIR|CKPT.pt]` runs a
    policy through the tool loop in sandbox sessions and keeps verified trajectories (SFT/CPT data)."""
    from codekiln.operator.runners import AGENT_MAIN

    return _run_entry_point(AGENT_MAIN, "agent", "codekiln agent", args.agent_args)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"codekiln {__version__} (API {GROUP_VERSION})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codekiln",
        description="Train code LLMs end to end on Kubernetes: DataPipeline, PretrainRun, RLRun, SandboxPool.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("crds", help="write crds/*.yaml from the resource models", description=cmd_crds.__doc__)
    p.add_argument("--root", default=".", help="project root to write crds/ and helm/codekiln/crds/ under")
    p.set_defaults(func=cmd_crds)

    p = sub.add_parser("validate", help="validate resource files", description=cmd_validate.__doc__)
    p.add_argument("-f", "--file", action="append", required=True,
                   help="YAML file or folder of *.yaml (repeatable; multi-document ok)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a resource on this machine", description=cmd_run.__doc__)
    p.add_argument("-f", "--file", action="append", required=True,
                   help="YAML file or folder of *.yaml (repeatable); several resources run in spec.after order")
    p.add_argument("--local", action="store_true", help="run here, without a cluster")
    p.add_argument("--init-from", metavar="FOLDER",
                   help="continue from a Hugging Face model folder (a codekiln export, Qwen2.5-Coder, Qwen3, ...): "
                   "PretrainRuns start from it (initFrom), DataPipelines pack with its tokenizer.json, RLRuns "
                   "warm-start from it when no PretrainRun runs")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("operator", help="start the Kubernetes operator", description=cmd_operator.__doc__)
    p.add_argument("--namespace", action="append", help="namespace to watch (repeatable)")
    p.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port (0 = off)")
    p.add_argument("--liveness-port", type=int, default=8080, help="liveness probe port (0 = off)")
    p.set_defaults(func=cmd_operator)

    p = sub.add_parser("sandbox", help="sandbox execution server", description="Sandbox execution server.")
    ssub = p.add_subparsers(dest="sandbox_command", required=True, metavar="SUBCOMMAND")
    s = ssub.add_parser("serve", help="serve /run_code and friends", description=cmd_sandbox_serve.__doc__)
    s.add_argument("--host", help="listen address (default 0.0.0.0)")
    s.add_argument("--port", type=int, help="port (default 8080)")
    s.add_argument("--max-concurrency", type=int, help="executions at once")
    s.add_argument("--max-queue", type=int, help="waiting requests before answering 429")
    s.add_argument("--work-dir", help="where per-run work folders go (default /tmp/codekiln-sandbox)")
    s.add_argument("--config", help="a resource (spec.sandbox) or SandboxConfig file; flags override it")
    s.set_defaults(func=cmd_sandbox_serve)

    p = sub.add_parser("serve", help="serve a model folder (OpenAI-compatible, CPU)", description=cmd_serve.__doc__)
    p.add_argument("model_dir", help="Hugging Face export folder (config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000; 0 = any free port)")
    p.add_argument("--model-name", help="model name reported by /v1/models (default: the folder's name)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("eval", help="evaluate a model or an endpoint (pass@k, FIM, needle)",
                       description=cmd_eval.__doc__)
    p.add_argument("--model", help="Hugging Face export folder, evaluated in process")
    p.add_argument("--base-url", help="OpenAI-compatible endpoint (.../v1)")
    p.add_argument("--model-name", help="model name sent to the endpoint")
    p.add_argument("--api-key-env", help="env var holding the endpoint's API key")
    p.add_argument("--tokenizer", help="tokenizer.json of the endpoint's model (needle token counts)")
    p.add_argument("--config", help="YAML EvalConfig, or a run resource with spec.*.eval")
    p.add_argument("--benchmark", action="append", help="humaneval or jsonl:PATH (repeatable)")
    p.add_argument("--limit", type=int, help="first N problems of each benchmark")
    p.add_argument("--mode", choices=["greedy", "sampled"], help="greedy (pass@1) or sampled")
    p.add_argument("-n", "--samples-per-task", type=int, help="samples per problem (sampled mode)")
    p.add_argument("--k", action="append", type=int, help="k of pass@k (repeatable)")
    p.add_argument("--temperature", type=float, help="sampling temperature (sampled mode)")
    p.add_argument("--seed", type=int, help="base seed (sample i uses seed + i)")
    p.add_argument("--max-tokens", type=int, help="completion length limit")
    p.add_argument("--fim", action="append", help="held-out files for FIM exact match (repeatable)")
    p.add_argument("--needle", help="Needle-in-the-Code context lengths in tokens, comma-separated")
    p.add_argument("--sandbox-url", help="sandbox server (default $CODEKILN_SANDBOX_URL or a local one)")
    p.add_argument("--out", help="results folder (default eval-results)")
    p.set_defaults(func=cmd_eval)

    from codekiln.operator.kubectl_plugin import add_commands  # render, get, describe, logs, wait

    add_commands(sub)

    p = sub.add_parser("data", help="DataPipeline tools", description="DataPipeline tools.")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    s = dsub.add_parser("explain", help="why was a file dropped?", description=cmd_data_explain.__doc__)
    s.add_argument("run", metavar="RUN", help="the DataPipeline's outputDir (or a name under runs/)")
    s.add_argument("path", metavar="PATH", help="a file path or document id (a path suffix works)")
    s.set_defaults(func=cmd_data_explain)

    p = sub.add_parser("agent", help="agentic RL data: generate SWE-style tasks, collect trajectories",
                       description=cmd_agent.__doc__)
    p.add_argument("agent_args", nargs=argparse.REMAINDER, help="generate-tasks ... | collect ... (--help for each)")
    p.set_defaults(func=cmd_agent)

    p = sub.add_parser("version", help="print the version", description="Print the codekiln version.")
    p.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:  # configuration problems surface as one line
        _err(f"codekiln {args.command}: {exc}")
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
