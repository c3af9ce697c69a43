"""Training-step throughput and peak memory: codekiln's Transformer vs transformers' LlamaForCausalLM.

Same shape, same weights, same batch, same optimizer (AdamW): one step = forward, loss,
backward, optimizer step. Runs alternate (ours, theirs, ours, ...) and the median of each
is kept; on CPU the metric is tokens per CPU-second (robust to a shared machine's load),
wall tokens/s is reported beside it. Each run is a fresh process so peak memory is its own (CPU: peak RSS growth
over the post-setup RSS; GPU: ``torch.cuda.max_memory_allocated``). On a GPU it also reports MFU (bf16).

    python benchmarks/train_step.py [--preset small] [--batch 4] [--seq-len 512] [--steps 5]

Last line: one JSON object (name, metric, unit, ours, baseline, baseline_name, ratio, params, ...).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import torch


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def _run(impl: str, args: dict, queue) -> None:
    from codekiln.workloads.model.config import ModelConfig
    from codekiln.workloads.model.hf import hf_config, to_hf_state_dict
    from codekiln.workloads.model.transformer import Transformer
    from codekiln.workloads.train.loss import token_ce_sum
    from codekiln.workloads.train.metrics import device_peak_tflops, flops_per_token

    torch.manual_seed(0)
    torch.set_num_threads(args["threads"])  # 1 by default: no OpenMP spin-waits inflating CPU time
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = ModelConfig(preset=args["preset"], max_seq_len=max(args["seq_len"], 8))
    ours = Transformer(cfg)
    if impl == "ours":
        model = ours
    else:
        import transformers

        hf_cfg = transformers.LlamaConfig(**{k: v for k, v in hf_config(cfg).items() if k != "codekiln_model"})
        hf_cfg._attn_implementation = "sdpa"
        model = transformers.LlamaForCausalLM(hf_cfg)
        model.load_state_dict(to_hf_state_dict(ours.state_dict()))
    del ours
    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, cfg.vocab_size, (args["batch"], args["seq_len"]), device=device)
    labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    batch = {"input_ids": ids, "labels": labels}

    def step() -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            if impl == "ours":
                loss = token_ce_sum(model, batch) / (labels != -100).sum()
            else:
                loss = model(input_ids=ids, labels=ids).loss  # HF shifts labels itself
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    for _ in range(args["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_rss = _rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    losses = [step() for _ in range(args["steps"])]
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = args["batch"] * args["seq_len"] * args["steps"]
    tokens_per_s = tokens / elapsed
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    result = {"tokens_per_s": tokens_per_s, "tokens_per_cpu_s": tokens / cpu, "peak_mib": peak,
              "loss": losses[-1], "device": str(device)}
    tflops = device_peak_tflops(device, None)
    if tflops:
        result["mfu"] = flops_per_token(cfg, args["seq_len"]) * tokens_per_s / (tflops * 1e12)
        result["device_name"] = torch.cuda.get_device_name(device)
    queue.put(result)


def measure(impl: str, args: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(impl, args, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "125m", "1b", "8b"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each; the median is kept")
    a = parser.parse_args()
    args = {"preset": a.preset, "batch": a.batch, "seq_len": a.seq_len, "steps": a.steps, "warmup": a.warmup,
            "rounds": a.rounds, "threads": a.threads}
    runs: dict[str, list[dict]] = {"ours": [], "hf": []}
    for _ in range(a.rounds):  # alternate so a noisy neighbour slows both alike
        for impl in runs:
            runs[impl].append(measure(impl, args))
    # On a shared CPU, wall time swings with the neighbours' load; CPU time consumed per token does not.
    gpu = torch.cuda.is_available()
    key, unit = ("tokens_per_s", "tokens/s") if gpu else ("tokens_per_cpu_s", "tokens/CPU-s")
    ours, theirs = (sorted(runs[i], key=lambda r: r[key])[len(runs[i]) // 2] for i in ("ours", "hf"))  # median
    for name, r in (("codekiln", ours), ("transformers", theirs)):
        print(f"{name:13s} {r['tokens_per_s']:9.1f} tokens/s  {r['tokens_per_cpu_s']:9.1f} tokens/CPU-s  "
              f"peak {r['peak_mib']:8.1f} MiB  loss {r['loss']:.4f}")
    out = {
        "name": "train_step",
        "metric": "tokens_per_second" if gpu else "tokens_per_cpu_second",
        "unit": unit,
        "ours": round(ours[key], 2),
        "baseline": round(theirs[key], 2),
        "baseline_name": f"transformers {__import__('transformers').__version__} LlamaForCausalLM (sdpa)",
        "ratio": round(ours[key] / theirs[key], 3),
        "wall_tokens_per_s_ours": round(ours["tokens_per_s"], 2),
        "wall_tokens_per_s_baseline": round(theirs["tokens_per_s"], 2),
        "peak_mib_ours": round(ours["peak_mib"], 1),
        "peak_mib_baseline": round(theirs["peak_mib"], 1),
        "memory_ratio": round(theirs["peak_mib"] / max(ours["peak_mib"], 1e-6), 3),
        "device": ours["device"],
        "params": {**args, "optimizer": "AdamW", "dtype": "bf16" if ours["device"].startswith("cuda") else "fp32",
                   "torch": torch.__version__},
    }
    if "mfu" in ours:
        out.update(mfu_ours=round(ours["mfu"], 4), mfu_baseline=round(theirs["mfu"], 4),
                   device_name=ours["device_name"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
