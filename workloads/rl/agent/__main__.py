"""``python -m codekiln.workloads.rl.agent`` — make SWE-style tasks, collect trajectory data.

    generate-tasks --out DIR [--modules statistics fractions ...] [--max-tasks N] [--seed S]
    collect --tasks DIR/tasks.jsonl --out traj.jsonl [--policy reference|HF_FOLDER|CKPT.pt]
            [--samples K] [--keep resolved|all] [--system-prompt hermes|compact] [--sandbox-url URL]
            (default: a local sandbox server; --policy may be an OpenAI-compatible base URL ending in /v1)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codekiln.workloads.rl.agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate-tasks", help="make verified tasks from Python modules on disk")
    g.add_argument("--out", required=True)
    g.add_argument("--modules", nargs="+", default=None)
    g.add_argument("--python", default=None, help="interpreter the tests run with (default: system python3)")
    g.add_argument("--max-tasks", type=int, default=8)
    g.add_argument("--per-module", type=int, default=4)
    g.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("collect", help="run a policy through the tool loop; keep verified trajectories")
    c.add_argument("--tasks", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--policy", default="reference")
    c.add_argument("--samples", type=int, default=1)
    c.add_argument("--keep", default="resolved", choices=("resolved", "all"))
    c.add_argument("--max-turns", type=int, default=8)
    c.add_argument("--system-prompt", default="hermes", choices=("hermes", "compact"))
    c.add_argument("--max-total-tokens", type=int, default=8192)
    c.add_argument("--max-turn-tokens", type=int, default=512)
    c.add_argument("--temperature", type=float, default=0.8)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--sandbox-url", default=os.environ.get("CODEKILN_SANDBOX_URL"))
    args = parser.parse_args(argv)
    try:
        if args.cmd == "generate-tasks":
            from codekiln.workloads.rl.agent.generate import DEFAULT_MODULES, generate_tasks

            tasks = generate_tasks(args.out, tuple(args.modules or DEFAULT_MODULES), python=args.python,
                                   max_tasks=args.max_tasks, per_module=args.per_module, seed=args.seed,
                                   on_task=lambda t: print(f"task {t.instance_id}: FAIL_TO_PASS {t.fail_to_pass}",
                                                           file=sys.stderr))
            print(json.dumps({"tasks": len(tasks), "out": os.path.join(args.out, "tasks.jsonl")}))
            return 0 if tasks else 1
        from codekiln.workloads.rl.agent.collect import collect
        from codekiln.workloads.rl.agent.config import AgentConfig
        from codekiln.workloads.rl.agent.tasks import load_swe_tasks

        tasks = load_swe_tasks(args.tasks)
        if args.sandbox_url:
            server = contextlib.nullcontext(args.sandbox_url)
        else:
            from codekiln.workloads.sandbox.local import local_server

            server = local_server()
        with server as url:
            cfg = AgentConfig(max_turns=args.max_turns, system_prompt=args.system_prompt,
                              max_total_tokens=args.max_total_tokens)
            stats = collect(tasks, url, args.out, policy=args.policy, samples_per_task=args.samples, keep=args.keep,
                            cfg=cfg, max_turn_tokens=args.max_turn_tokens, temperature=args.temperature, seed=args.seed)
        print(json.dumps(stats))
        return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
