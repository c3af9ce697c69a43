"""Training-step throughput and peak memory: codekiln's Transformer vs transformers, dense and MoE.

Cases (same config, same weights, same batch, same optimizer — AdamW; one step = forward, loss,
backward, optimizer step):

- ``dense``: preset ``small`` vs transformers' ``LlamaForCausalLM`` (sdpa).
- ``moe``: a Qwen3-MoE (8 experts, top-2, q/k norm) vs transformers' ``Qwen3MoeForCausalLM`` (sdpa, its
  default ``grouped_mm`` experts), both adding the load-balancing loss.
- ``dense-1b`` / ``moe-gpu`` (GPU, bf16 autocast): a ~1.2B Llama and a ~0.9B-total / ~0.3B-active Qwen3-MoE, with MFU.

The baseline model is loaded from codekiln's export with ``from_pretrained`` (so the comparison also
exercises the export). Runs alternate (ours, theirs, ours, ...) and the median of each is kept; on CPU
the metric is tokens per CPU-second (robust to a shared machine's load), wall tokens/s beside it. Each
run is a fresh process so peak memory is its own (CPU: peak RSS over the RSS before the first step, i.e.
optimizer state + activations + temporaries; GPU: ``torch.cuda.max_memory_allocated``).

    python benchmarks/train_step.py [--case dense|moe|dense-1b|moe-gpu|cpu|gpu] [--rounds 3] [--out FILE]

Prints one JSON object per case (name, metric, unit, ours, baseline, baseline_name, ratio, memory, ...).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time

import torch

MOE_SMALL = {"num_experts": 8, "top_k": 2, "expert_ffn_dim": 256, "norm_topk_prob": True}
CASES: dict[str, dict] = {
    "dense": {"model": {"preset": "small"}, "batch": 4, "seq_len": 512, "hf": "LlamaForCausalLM"},
    "moe": {"model": {"preset": "small", "family": "qwen3_moe", "moe": MOE_SMALL}, "batch": 4, "seq_len": 512,
            "hf": "Qwen3MoeForCausalLM"},
    "dense-1b": {"model": {"preset": "1b", "vocab_size": 32768}, "batch": 4, "seq_len": 2048,
                 "hf": "LlamaForCausalLM", "gpu": True},
    "moe-gpu": {"model": {"family": "qwen3_moe", "dim": 1024, "n_layers": 12, "n_heads": 16, "n_kv_heads": 4,
                          "vocab_size": 32768, "ffn_dim": 2816,
                          "moe": {"num_experts": 16, "top_k": 2, "expert_ffn_dim": 1408, "norm_topk_prob": True}},
                "batch": 4, "seq_len": 2048, "hf": "Qwen3MoeForCausalLM", "gpu": True},
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def _run(impl: str, case: dict, args: dict, queue) -> None:
    from codekiln.workloads.model.config import ModelConfig
    from codekiln.workloads.model.hf import export_hf
    from codekiln.workloads.model.transformer import Transformer
    from codekiln.workloads.train.loss import token_ce_sum
    from codekiln.workloads.train.metrics import device_peak_tflops, flops_per_token

    torch.manual_seed(0)
    torch.set_num_threads(args["threads"])  # 1 by default: no OpenMP spin-waits inflating CPU time
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    seq_len, batch_size = case["seq_len"], case["batch"]
    cfg = ModelConfig(**case["model"], max_seq_len=max(seq_len, 8))
    ours = Transformer(cfg)
    if impl == "ours":
        model = ours
    else:
        import transformers

        with tempfile.TemporaryDirectory() as tmp:
            export_hf(ours, cfg, tmp)
            model = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                                      attn_implementation="sdpa")
        assert type(model).__name__ == case["hf"], type(model).__name__
    del ours
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), device=device)
    labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    batch = {"input_ids": ids, "labels": labels}
    moe = cfg.moe is not None

    def step() -> float:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            if impl == "ours":
                loss = token_ce_sum(model, batch) / (labels != -100).sum() + model.moe_loss()
            else:  # HF shifts labels itself and adds router_aux_loss_coef x aux loss
                loss = model(input_ids=ids, labels=ids, output_router_logits=moe).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    base_rss = _rss_mib()  # model, batch and allocator before the first step; the peak adds optimizer + activations
    for _ in range(args["warmup"]):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    losses = [step() for _ in range(args["steps"])]
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    tokens = batch_size * seq_len * args["steps"]
    tokens_per_s = tokens / elapsed
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    result = {"tokens_per_s": tokens_per_s, "tokens_per_cpu_s": tokens / cpu, "peak_mib": peak,
              "loss": losses[-1], "device": str(device),
              "params": sum(p.numel() for p in model.parameters())}
    tflops = device_peak_tflops(device, None)
    if tflops:
        result["mfu"] = flops_per_token(cfg, seq_len) * tokens_per_s / (tflops * 1e12)
        result["device_name"] = torch.cuda.get_device_name(device)
    queue.put(result)


def measure(impl: str, case: dict, args: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(impl, case, args, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join()
    return result


def run_case(name: str, args: dict) -> dict:
    case = CASES[name]
    runs: dict[str, list[dict]] = {"ours": [], "hf": []}
    for _ in range(args["rounds"]):  # alternate so a noisy neighbour slows both alike
        for impl in runs:
            runs[impl].append(measure(impl, case, args))
    # On a shared CPU, wall time swings with the neighbours' load; CPU time consumed per token does not.
    gpu = torch.cuda.is_available()
    key, unit = ("tokens_per_s", "tokens/s") if gpu else ("tokens_per_cpu_s", "tokens/CPU-s")
    ours, theirs = (sorted(runs[i], key=lambda r: r[key])[len(runs[i]) // 2] for i in ("ours", "hf"))  # median
    for who, r in (("codekiln", ours), ("transformers", theirs)):
        print(f"[{name}] {who:13s} {r['tokens_per_s']:9.1f} tokens/s  {r['tokens_per_cpu_s']:9.1f} tokens/CPU-s  "
              f"peak {r['peak_mib']:8.1f} MiB  loss {r['loss']:.4f}", flush=True)
    out = {
        "name": f"train_step/{name}",
        "metric": "tokens_per_second" if gpu else "tokens_per_cpu_second",
        "unit": unit,
        "ours": round(ours[key], 2),
        "baseline": round(theirs[key], 2),
        "baseline_name": f"transformers {__import__('transformers').__version__} {case['hf']} (sdpa"
                         + (", grouped_mm experts)" if "Moe" in case["hf"] else ")"),
        "ratio": round(ours[key] / theirs[key], 3),
        "all_ratios": [round(a[key] / b[key], 3) for a, b in zip(runs["ours"], runs["hf"], strict=True)],
        "wall_tokens_per_s_ours": round(ours["tokens_per_s"], 2),
        "wall_tokens_per_s_baseline": round(theirs["tokens_per_s"], 2),
        "peak_mib_ours": round(ours["peak_mib"], 1),
        "peak_mib_baseline": round(theirs["peak_mib"], 1),
        "memory_ratio": round(theirs["peak_mib"] / max(ours["peak_mib"], 1e-6), 3),
        "loss_ours": round(ours["loss"], 4),
        "loss_baseline": round(theirs["loss"], 4),
        "device": ours["device"],
        "params": {"model": CASES[name]["model"], "n_params": ours["params"], "batch": case["batch"],
                   "seq_len": case["seq_len"], "steps": args["steps"], "warmup": args["warmup"],
                   "rounds": args["rounds"], "threads": args["threads"], "optimizer": "AdamW",
                   "dtype": "bf16 autocast" if gpu else "fp32", "torch": torch.__version__},
        "note": "ratio of medians; CPU metric is per CPU-second so a shared machine's load cancels out",
    }
    if "mfu" in ours:
        out.update(mfu_ours=round(ours["mfu"], 4), mfu_baseline=round(theirs["mfu"], 4),
                   device_name=ours["device_name"])
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="cpu", choices=[*CASES, "cpu", "gpu"],
                        help="one case, or cpu (dense + moe) / gpu (dense-1b + moe-gpu)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each; the median is kept")
    parser.add_argument("--out", default=None, help="also write the JSON results (a list) to this file")
    a = parser.parse_args()
    args = {"steps": a.steps, "warmup": a.warmup, "rounds": a.rounds, "threads": a.threads}
    names = {"cpu": ["dense", "moe"], "gpu": ["dense-1b", "moe-gpu"]}.get(a.case, [a.case])
    if any(CASES[n].get("gpu") for n in names) and not torch.cuda.is_available():
        raise SystemExit(f"--case {a.case} needs a CUDA GPU")
    results = [run_case(n, args) for n in names]
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
