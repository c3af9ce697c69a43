"""``codekiln eval``: evaluate an exported model folder (in process) or an OpenAI-compatible endpoint.

Examples::

    codekiln eval --model runs/pretrainrun-demo/hf --benchmark humaneval --limit 20
    codekiln eval --base-url http://vllm:8000/v1 --model-name coder --mode sampled -n 20 --k 1 --k 10
    codekiln eval --model runs/x/hf --fim data/heldout/ --needle 256,512
    codekiln eval --config eval.yaml          # an EvalConfig (the `eval` block of a run), flags override
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="codekiln eval", description="pass@k (HumanEval, task JSONL), FIM "
                                "single-line exact match and Needle-in-the-Code for a model or an endpoint.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="Hugging Face export folder, evaluated in process (torch, CPU/GPU)")
    src.add_argument("--base-url", help="OpenAI-compatible endpoint (…/v1), e.g. `vllm serve` or `codekiln serve`")
    p.add_argument("--model-name", default="default", help="model name sent to the endpoint")
    p.add_argument("--api-key-env", help="env var holding the endpoint's API key")
    p.add_argument("--tokenizer", help="tokenizer.json of the endpoint's model (token counts for the needle probe)")
    p.add_argument("--config", help="YAML/JSON EvalConfig (or a run resource with spec.*.eval); flags override")
    p.add_argument("--benchmark", action="append", help="humaneval or jsonl:PATH (repeatable)")
    p.add_argument("--limit", type=int, help="first N problems of each benchmark")
    p.add_argument("--mode", choices=["greedy", "sampled"])
    p.add_argument("-n", "--samples-per-task", type=int, help="samples per problem (sampled mode)")
    p.add_argument("--k", action="append", type=int, help="k of pass@k (repeatable)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--fim", action="append", help="held-out files for FIM exact match (repeatable)")
    p.add_argument("--needle", help="comma-separated context lengths in tokens for Needle-in-the-Code")
    p.add_argument("--sandbox-url", help="sandbox server (default $CODEKILN_SANDBOX_URL or a local one)")
    p.add_argument("--out", default="eval-results", help="results folder (default eval-results)")
    return p


def _load_config(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    spec = data.get("spec") if isinstance(data, dict) else None
    if isinstance(spec, dict):  # a run resource: spec.<block>.eval
        for block in spec.values():
            if isinstance(block, dict) and isinstance(block.get("eval"), dict):
                return block["eval"]
        raise ValueError(f"--config {path}: the resource has no spec.*.eval block")
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a mapping")
    return data


def config_from_args(args: argparse.Namespace):
    """Merge ``--config`` with the flags into an ``EvalConfig`` (errors name the field)."""
    from pydantic import ValidationError

    from codekiln.workloads.eval.config import EvalConfig

    raw = _load_config(args.config)
    if args.benchmark:
        benches = []
        for b in args.benchmark:
            if b == "humaneval":
                benches.append({"source": "humaneval"})
            elif b.startswith("jsonl:"):
                benches.append({"source": "jsonl", "path": b[len("jsonl:"):]})
            else:
                raise ValueError(f"--benchmark {b!r}: use humaneval or jsonl:PATH")
        raw["benchmarks"] = benches
    if args.limit:
        raw["benchmarks"] = [{**b, "limit": args.limit} for b in raw.get("benchmarks", [])]
    for flag, key in (("mode", "mode"), ("samples_per_task", "samplesPerTask"), ("k", "ks"),
                      ("temperature", "temperature"), ("seed", "seed"), ("max_tokens", "maxTokens"),
                      ("sandbox_url", "sandboxUrl")):
        if getattr(args, flag) is not None:
            raw[key] = getattr(args, flag)
    if args.fim:
        raw["fim"] = {**raw.get("fim", {}), "paths": args.fim}
    if args.needle:
        raw["needle"] = {**raw.get("needle", {}), "contextLengths": [int(x) for x in args.needle.split(",")]}
    if not raw.get("benchmarks") and not raw.get("fim") and not raw.get("needle"):
        raw["benchmarks"] = [{"source": "humaneval"}]
    try:
        return EvalConfig.model_validate(raw)
    except ValidationError as exc:
        from codekiln.workloads.schema import error_lines

        raise ValueError("; ".join(error_lines(exc, ("eval",)))) from None


def build_generator(args: argparse.Namespace, cfg):
    """A ``TorchGenerator`` over ``--model`` or an ``EndpointGenerator`` over ``--base-url`` / ``cfg.llm``."""
    from codekiln.workloads.eval.generators import EndpointGenerator, TorchGenerator

    if args.model:
        from codekiln.workloads.model.hf import load_hf
        from codekiln.workloads.rl.tokenizer import FileTokenizer

        folder = Path(args.model)
        if not (folder / "config.json").is_file():
            raise ValueError(f"--model {folder}: no config.json (give a PretrainRun's export folder)")
        model, _ = load_hf(folder)
        return TorchGenerator(model.eval(), FileTokenizer(folder))
    from codekiln.workloads.llm import build_client
    from codekiln.workloads.llm.config import LLMConfig

    if args.base_url:
        llm = LLMConfig(base_url=args.base_url, model=args.model_name, cache=False,
                        **({"api_key_env": args.api_key_env} if args.api_key_env else {}))
    elif cfg.llm is not None:
        llm = cfg.llm
    else:
        raise ValueError("give --model DIR or --base-url URL (or llm: in --config)")
    context = None
    if args.tokenizer is None and llm.serve:
        args.tokenizer = str(Path(llm.serve) / "tokenizer.json")
    return EndpointGenerator(build_client(llm, args.out), tokenizer_path=args.tokenizer, context_length=context)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from codekiln.workloads.eval.runner import format_table, run_eval

    try:
        cfg = config_from_args(args)
        generator = build_generator(args, cfg)
        rows = run_eval(cfg, generator, Path(args.out), report_progress=False)
    except (ValueError, FileNotFoundError) as exc:
        print(f"codekiln eval: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(format_table(rows), end="")
    print(json.dumps({"results": str(Path(args.out) / "results.jsonl")}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
