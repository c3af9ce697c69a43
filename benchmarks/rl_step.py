"""End-to-end RL step on CPU: generate (torch engine, KV cache) + score (a real local sandbox
server runs the unit tests) + train (trie-packed GRPO update) + sync, with the time split the
trainer reports (``time_generate_s``, ``time_score_s``, ``time_train_s``, ``time_sync_s``).

Three runs in one process, alternating step by step so that load on the shared machine hits all alike:

* ``ours``: trie-packed training, synchronous rollouts (the default);
* ``unpacked`` (the baseline): the same run training on right-padded rows;
* ``async``: trie-packed, ``rolloutStaleness: 1`` (step n+1 generated while step n trains).

    python benchmarks/rl_step.py [--steps 3] [--prompts 4 --rollouts 8 --max-tokens 64] [--preset small]

Last line: one JSON object (name, metric, unit, ours, baseline, baseline_name, ratio, ...). The CPU is
shared with other jobs: compare the ratios, not absolute times. No vLLM numbers without a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

from codekiln.workloads.rl.config import RLConfig
from codekiln.workloads.rl.rewards import SandboxScorer
from codekiln.workloads.rl.trainer import RLTrainer

PHASES = ("time_generate_s", "time_score_s", "time_train_s", "time_sync_s", "step_time_s")


def make_trainer(args, url: str, out: Path, **over) -> RLTrainer:
    spec = {
        "model": {"preset": args.preset, "maxSeqLen": 512}, "device": "cpu", "cpuThreads": args.threads,
        "promptsPerStep": args.prompts, "rolloutsPerPrompt": args.rollouts, "maxResponseTokens": args.max_tokens,
        "steps": args.steps + 1, "optimizer": {"lr": 1e-4}, "dynamicSampling": {"enabled": False},
        "tasks": {"source": "builtin"}, "warmStart": {"sftSteps": args.sft_steps, "sftCorrectFraction": 0.5},
        "outputDir": str(out), "seed": 0, "curriculum": {"enabled": False},
    }
    spec.update(over)
    trainer = RLTrainer(RLConfig.model_validate(spec), SandboxScorer(url), out)
    trainer.warm_start()
    trainer.finish_setup()
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=["tiny", "small"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run (after one warm-up step)")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--sft-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from codekiln.workloads.sandbox.local import local_server

    runs = {"ours": {}, "unpacked": {"triePacking": False}, "async": {"rolloutStaleness": 1}}
    history: dict[str, list[dict]] = {k: [] for k in runs}
    with local_server() as url, tempfile.TemporaryDirectory() as tmp:
        trainers = {name: make_trainer(args, url, Path(tmp) / name, **over) for name, over in runs.items()}
        for t in trainers.values():
            t.train_step()  # warm-up (and the async run's first prefetch)
        for _ in range(args.steps):
            for name, t in trainers.items():
                history[name].append(t.train_step())
        for t in trainers.values():
            if t.overlap is not None:
                t.overlap.close()
    summary = {}
    for name, steps in history.items():
        summary[name] = {k: statistics.median(m[k] for m in steps) for k in PHASES}
        summary[name].update({
            "rollout_tokens_per_second": statistics.median(m["rollout_tokens_per_second"] for m in steps),
            "trainer_tokens_per_second": statistics.median(m["trainer_tokens_per_second"] for m in steps),
            "trained_tokens": statistics.median(m["trained_tokens"] for m in steps),
            "response_len_p50": statistics.median(m["response_len_p50"] for m in steps),
        })
        s = summary[name]
        print(f"{name:>9}: step {s['step_time_s']:.2f} s = generate {s['time_generate_s']:.2f} + score "
              f"{s['time_score_s']:.2f} + train {s['time_train_s']:.2f} + sync {s['time_sync_s']:.2f} "
              f"(rollout {s['rollout_tokens_per_second']:.0f} tok/s, trainer {s['trainer_tokens_per_second']:.0f} "
              f"tok/s)", flush=True)
    ours, base, async_ = summary["ours"], summary["unpacked"], summary["async"]
    print(json.dumps({
        "name": "rl_step", "metric": "median RL step time (generate + score + train + sync)", "unit": "s",
        "ours": ours["step_time_s"], "baseline": base["step_time_s"],
        "baseline_name": "same run training on right-padded rows (triePacking: false)",
        "ratio": base["step_time_s"] / ours["step_time_s"],
        "train_ratio": base["time_train_s"] / ours["time_train_s"],
        "async_step_ratio": ours["step_time_s"] / async_["step_time_s"], "runs": summary,
        "note": "shared 2-core CPU: same-process alternating runs; in async mode a step reports the generation "
                "that overlapped it. vLLM numbers need a GPU (scripts/gpu-check.sh).",
        "params": {**vars(args), "torch": torch.__version__, "machine": platform.machine(), "device": "cpu"},
    }))


if __name__ == "__main__":
    main()
