"""Training-step throughput and peak memory: codekiln's Transformer vs transformers, dense and MoE.

Cases (same config, same weights, same batch, same optimizer — AdamW; one step = forward, loss,
backward, optimizer step):

- ``dense``: preset ``small`` vs transformers' ``LlamaForCausalLM`` (sdpa).
- ``moe``: a Qwen3-MoE (8 experts, top-2, q/k norm) vs transformers' ``Qwen3MoeForCausalLM`` (sdpa, its
  default ``grouped_mm`` experts), both adding the load-balancing loss.
- ``dense-1b`` / ``moe-gpu`` (GPU, bf16 autocast): a ~1.2B Llama and a ~0.9B-total / ~0.3B-active Qwen3-MoE, with MFU.

The baseline model is loaded from codekiln's export with ``from_pretrained`` (so the comparison also
exercises the export). Speed: both models live in one process and their steps are interleaved (ours,
theirs; then theirs, ours; ...), each step timed alone; the ratio is the median over these adjacent pairs,
so a shared machine's load hits both sides of a pair alike. On CPU the metric is tokens per CPU-second,
wall tokens/s beside it. Memory: each side alone in a fresh process (CPU: peak RSS over the RSS before
the first step, i.e. optimizer state + activations + temporaries; GPU: ``torch.cuda.max_memory_allocated``).

    python benchmarks/train_step.py [--case dense|moe|dense-1b|moe-gpu|cpu|gpu] [--rounds 3] [--steps 4] [--out FILE]

Prints one JSON object per case (name, metric, unit, ours, baseline, baseline_name, ratio, memory, ...).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
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


def _setup(case: dict, args: dict, impls: tuple[str, ...]) -> tuple[dict, object, torch.device]:
    """Build the case's models (``ours`` and/or ``hf``, same weights) and their step functions."""
    from codekiln.workloads.model.config import ModelConfig
    from codekiln.workloads.model.hf import export_hf
    from codekiln.workloads.model.transformer import Transformer
    from codekiln.workloads.train.loss import token_ce_sum

    torch.manual_seed(0)
    torch.set_num_threads(args["threads"])  # 1 by default: no OpenMP spin-waits inflating CPU time
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    seq_len, batch_size = case["seq_len"], case["batch"]
    cfg = ModelConfig(**case["model"], max_seq_len=max(seq_len, 8))
    ours = Transformer(cfg)
    models = {}
    if "hf" in impls:
        import transformers

        with tempfile.TemporaryDirectory() as tmp:
            export_hf(ours, cfg, tmp)
            hf = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32,
                                                                   attn_implementation="sdpa")
        assert type(hf).__name__ == case["hf"], type(hf).__name__
        assert hf.config._attn_implementation == "sdpa", hf.config._attn_implementation
        models["hf"] = hf
    if "ours" in impls:
        models["ours"] = ours
    ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), device=device)
    labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    batch = {"input_ids": ids, "labels": labels}
    moe = cfg.moe is not None

    def make_step(impl: str, model):
        model = model.to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)  # the same optimizer (and defaults) on both sides

        def step() -> float:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                if impl == "ours":  # mean next-token CE (+ MoE load-balancing loss), as the trainer computes it
                    loss = token_ce_sum(model, batch) / (labels != -100).sum() + model.moe_loss()
                else:  # HF shifts labels itself (mean CE) and adds router_aux_loss_coef x aux loss
                    loss = model(input_ids=ids, labels=ids, output_router_logits=moe).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss.detach())

        return step

    steps = {impl: make_step(impl, model) for impl, model in models.items()}
    info = {"cfg": cfg, "tokens": batch_size * seq_len, "device": device,
            "params": {impl: sum(p.numel() for p in m.parameters()) for impl, m in models.items()}}
    return steps, info, device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _speed(case: dict, args: dict, queue) -> None:
    """Both models in one process, steps interleaved (ours, theirs / theirs, ours alternating per round):
    a neighbour's load hits both sides of each pair alike."""
    steps, info, device = _setup(case, args, ("ours", "hf"))
    for _ in range(args["warmup"]):
        for impl in ("ours", "hf"):
            steps[impl]()
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "hf": []}
    losses = {}
    for r in range(args["rounds"] * args["steps"]):
        for impl in (("ours", "hf") if r % 2 == 0 else ("hf", "ours")):
            _sync(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            losses[impl] = steps[impl]()
            _sync(device)
            times[impl].append((time.perf_counter() - start, time.process_time() - cpu_start))
    result = {"times": times, "losses": losses, "tokens": info["tokens"], "device": str(device),
              "params": info["params"]["ours"]}
    from codekiln.workloads.train.metrics import device_peak_tflops, flops_per_token

    tflops = device_peak_tflops(device, None)
    if tflops:
        result["flops_per_token"] = flops_per_token(info["cfg"], case["seq_len"])
        result["peak_tflops"] = tflops
        result["device_name"] = torch.cuda.get_device_name(device)
    queue.put(result)


def _memory(impl: str, case: dict, args: dict, queue) -> None:
    """Peak memory of one side alone in a fresh process (CPU: peak RSS over the RSS before the first step,
    i.e. optimizer state + activations + temporaries; GPU: ``torch.cuda.max_memory_allocated``)."""
    steps, _, device = _setup(case, args, (impl,))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base_rss = _rss_mib()
    for _ in range(2):
        steps[impl]()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    queue.put(peak)


def _in_process(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get(timeout=3600)
    proc.join()
    return result


def _median(xs: list[float]) -> float:
    return statistics.median(xs)


def run_case(name: str, args: dict) -> dict:
    case = CASES[name]
    speed = _in_process(_speed, case, args)
    peak = {impl: _in_process(_memory, impl, case, args) for impl in ("ours", "hf")}
    gpu = torch.cuda.is_available()
    idx = 0 if gpu else 1  # GPU: wall time; CPU: CPU time of the process (the per-pair ratio cancels load too)
    t_ours = [t[idx] for t in speed["times"]["ours"]]
    t_hf = [t[idx] for t in speed["times"]["hf"]]
    ratios = [b / a for a, b in zip(t_ours, t_hf, strict=True)]  # adjacent pairs
    tokens = speed["tokens"]
    ours_tps, hf_tps = tokens / _median(t_ours), tokens / _median(t_hf)
    wall_ours = tokens / _median([t[0] for t in speed["times"]["ours"]])
    wall_hf = tokens / _median([t[0] for t in speed["times"]["hf"]])
    unit = "tokens/s" if gpu else "tokens/CPU-s"
    for who, tps, wall, mem, loss in (("codekiln", ours_tps, wall_ours, peak["ours"], speed["losses"]["ours"]),
                                      ("transformers", hf_tps, wall_hf, peak["hf"], speed["losses"]["hf"])):
        print(f"[{name}] {who:13s} {tps:9.1f} {unit}  {wall:9.1f} wall tokens/s  peak {mem:8.1f} MiB  "
              f"loss {loss:.4f}", flush=True)
    out = {
        "name": f"train_step/{name}",
        "metric": "tokens_per_second" if gpu else "tokens_per_cpu_second",
        "unit": unit,
        "ours": round(ours_tps, 2),
        "baseline": round(hf_tps, 2),
        "baseline_name": f"transformers {__import__('transformers').__version__} {case['hf']} (sdpa"
                         + (", grouped_mm experts)" if "Moe" in case["hf"] else ")"),
        "ratio": round(_median(ratios), 3),
        "ratio_of_medians": round(ours_tps / hf_tps, 3),
        "n_pairs": len(ratios),
        "all_ratios": [round(r, 3) for r in ratios],
        "wall_tokens_per_s_ours": round(wall_ours, 2),
        "wall_tokens_per_s_baseline": round(wall_hf, 2),
        "peak_mib_ours": round(peak["ours"], 1),
        "peak_mib_baseline": round(peak["hf"], 1),
        "memory_ratio": round(peak["hf"] / max(peak["ours"], 1e-6), 3),
        "loss_ours": round(speed["losses"]["ours"], 4),
        "loss_baseline": round(speed["losses"]["hf"], 4),
        "device": speed["device"],
        "params": {"model": CASES[name]["model"], "n_params": speed["params"], "batch": case["batch"],
                   "seq_len": case["seq_len"], "pairs": len(ratios), "warmup": args["warmup"],
                   "threads": args["threads"], "optimizer": "AdamW (torch defaults, both sides)",
                   "dtype": "bf16 autocast" if gpu else "fp32", "torch": torch.__version__},
        "note": "ratio = median over adjacent step pairs (ours, transformers) interleaved in one process, order "
                "alternating; CPU time per step, so a shared machine's load cancels out; memory from a fresh "
                "process per side",
    }
    if "peak_tflops" in speed:
        mfu = speed["flops_per_token"] / (speed["peak_tflops"] * 1e12)
        out.update(mfu_ours=round(mfu * ours_tps, 4), mfu_baseline=round(mfu * hf_tps, 4),
                   device_name=speed["device_name"])
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="cpu", choices=[*CASES, "cpu", "gpu"],
                        help="one case, or cpu (dense + moe) / gpu (dense-1b + moe-gpu)")
    parser.add_argument("--steps", type=int, default=4, help="step pairs per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each side first")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds x steps interleaved pairs are timed; the median ratio is kept")
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
