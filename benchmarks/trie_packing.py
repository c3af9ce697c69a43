"""Trie-packed vs unpacked RL training step.

Rollouts share a prompt (``--prompt-tokens``, default 512) and have 64–256-token
completions. One training step = forward, PPO-clip loss with per-rollout advantages,
backward and an AdamW step over all rollouts. The packed step merges the rollouts into
a prefix tree (one row, tree attention mask, depth positions); the baseline pads every
rollout to the longest one (one row per rollout, causal mask), as in an unpacked trainer.
Both compute the same loss (checked on the first step); reported: best-of-N (and median) step time and
tokens processed per step, for 8 and 16 rollouts.

    python benchmarks/trie_packing.py [--preset tiny] [--dim 384 --layers 4 --ffn-dim 1024 --vocab 512]
        [--device cpu] [--repeats 5]

Last line: one JSON object (name, metric, unit, ours, baseline, baseline_name, ratio, ...).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from codekiln.workloads.model.config import ModelConfig
from codekiln.workloads.model.transformer import Transformer
from codekiln.workloads.rl.logprobs import response_logprobs
from codekiln.workloads.rl.losses import aggregate, ppo_clip_loss
from codekiln.workloads.rl.trie import build_trie


def make_rollouts(n: int, prompt_tokens: int, lo: int, hi: int, vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(0, vocab, (prompt_tokens,), generator=g).tolist()
    responses = [torch.randint(0, vocab, (int(torch.randint(lo, hi + 1, (1,), generator=g)),), generator=g).tolist()
                 for _ in range(n)]
    return [prompt] * n, responses


def train_step(model, opt, prompts, responses, old, adv, mask, packed: bool) -> float:
    opt.zero_grad()
    logp, _ = response_logprobs(model, prompts, responses, 1.0, packed=packed)
    loss = aggregate(ppo_clip_loss(logp, old, adv), mask, float(mask.sum()))
    loss.backward()
    opt.step()
    if logp.is_cuda:
        torch.cuda.synchronize()
    return float(loss.detach())


def bench(n: int, args, device) -> dict:
    sizes = {k: v for k, v in (("dim", args.dim), ("n_layers", args.layers), ("ffn_dim", args.ffn_dim),
                               ("vocab_size", args.vocab), ("n_heads", args.heads), ("n_kv_heads", args.kv_heads))
             if v is not None}
    cfg = ModelConfig(preset=args.preset, max_seq_len=args.prompt_tokens + args.max_completion + 8, **sizes)
    prompts, responses = make_rollouts(n, args.prompt_tokens, args.min_completion, args.max_completion,
                                       cfg.vocab_size, args.seed)
    width = max(len(r) for r in responses)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor([len(r) for r in responses]).unsqueeze(1)
    mask = mask.to(device)
    g = torch.Generator().manual_seed(1)
    old = (-4 + 0.1 * torch.randn(n, width, generator=g)).to(device)
    adv = torch.randn(n, generator=g).to(device)
    out, runs = {}, {}
    for packed in (True, False):
        torch.manual_seed(0)
        model = Transformer(cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        first = train_step(model, opt, prompts, responses, old, adv, mask, packed)  # warm-up, also the loss check
        runs[packed] = (model, opt, [])
        out["packed" if packed else "unpacked"] = {"first_loss": first}
    for _ in range(args.repeats):  # alternate so that load changes on a shared machine hit both alike
        for packed, (model, opt, times) in runs.items():
            t0 = time.perf_counter()
            train_step(model, opt, prompts, responses, old, adv, mask, packed)
            times.append(time.perf_counter() - t0)
    for packed, (_, _, times) in runs.items():
        # best of N: on a shared machine interference only ever adds time; the median is reported too
        out["packed" if packed else "unpacked"].update(step_s=min(times), median_step_s=statistics.median(times))
    trie = build_trie([p + r for p, r in zip(prompts, responses, strict=True)])
    out["packed"]["tokens"] = trie.num_tokens
    out["unpacked"]["tokens"] = n * (args.prompt_tokens + width)  # padded rows
    out["unpacked"]["real_tokens"] = sum(args.prompt_tokens + len(r) for r in responses)
    out["speedup"] = out["unpacked"]["step_s"] / out["packed"]["step_s"]
    out["loss_abs_diff"] = abs(out["packed"]["first_loss"] - out["unpacked"]["first_loss"])
    return out


def sizes_of(args) -> dict:
    return {k: getattr(args, k) for k in ("dim", "layers", "ffn_dim", "vocab", "heads", "kv_heads")
            if getattr(args, k) is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small", "125m"])
    for flag in ("--dim", "--layers", "--ffn-dim", "--vocab", "--heads", "--kv-heads"):
        parser.add_argument(flag, type=int, default=None, help="override the preset's size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--min-completion", type=int, default=64)
    parser.add_argument("--max-completion", type=int, default=256)
    parser.add_argument("--rollouts", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared box)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {}
    for n in args.rollouts:
        r = bench(n, args, device)
        results[str(n)] = r
        print(f"{n:>3} rollouts: packed {r['packed']['step_s'] * 1e3:8.1f} ms ({r['packed']['tokens']} tokens)  "
              f"unpacked {r['unpacked']['step_s'] * 1e3:8.1f} ms ({r['unpacked']['tokens']} padded tokens)  "
              f"speed-up {r['speedup']:.2f}x  |loss diff| {r['loss_abs_diff']:.1e}", flush=True)
    last = results[str(args.rollouts[-1])]
    print(json.dumps({
        "name": "trie_packing", "metric": f"training step time, {args.rollouts[-1]} rollouts", "unit": "s",
        "ours": last["packed"]["step_s"], "baseline": last["unpacked"]["step_s"],
        "baseline_name": "unpacked: one right-padded row per rollout, causal mask",
        "ratio": last["speedup"], "per_rollout_count": results,
        "params": {"preset": args.preset, "model_overrides": sizes_of(args), "device": str(device),
                   "prompt_tokens": args.prompt_tokens,
                   "completion_tokens": [args.min_completion, args.max_completion], "repeats": args.repeats,
                   "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
