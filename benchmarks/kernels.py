"""Benchmark the Triton kernels against the torch reference (and Liger-Kernel when importable).

Each case times forward + backward (median of repeats) and measures the peak memory that
one forward + backward adds: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the
process's resident high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``
after ``malloc_trim``). On CPU the kernels run under the Triton interpreter, so CPU
timings say nothing about GPU speed; the memory numbers are real.

    python benchmarks/kernels.py                 # small sizes on CPU, large on GPU
    python benchmarks/kernels.py --ops linear_cross_entropy --out benchmarks/results/h100.json

The last stdout line is one JSON object (headline: fused linear cross-entropy peak memory).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from rich.console import Console  # noqa: E402

import codekiln.kernels as K  # noqa: E402
from codekiln.kernels import reference as R  # noqa: E402

console = Console(stderr=True)

# op -> size -> parameters
SIZES: dict[str, dict[str, dict[str, int]]] = {
    "linear_cross_entropy": {
        "small": {"n": 2048, "v": 32768, "d": 128}, "large": {"n": 16384, "v": 128256, "d": 4096},
    },
    "token_logprobs_entropy": {
        "small": {"n": 1024, "v": 32768, "d": 128}, "large": {"n": 16384, "v": 128256, "d": 4096},
    },
    "rms_norm": {"small": {"n": 4096, "d": 1024}, "large": {"n": 32768, "d": 4096}},
    "apply_rope": {"small": {"b": 2, "h": 8, "t": 512, "d": 64}, "large": {"b": 4, "h": 32, "t": 4096, "d": 128}},
    "swiglu": {"small": {"n": 4096, "d": 2048}, "large": {"n": 16384, "d": 14336}},
}


@dataclass
class Case:
    """One op at one size: a builder for (leaf inputs, constants) and the implementations to compare."""

    op: str
    params: dict[str, int]
    build: Callable[[], tuple[list[torch.Tensor], dict]]
    impls: dict[str, Callable[..., object]]


def _liger() -> dict[str, Callable[..., object]]:
    """Liger-Kernel implementations with our call signatures, when it imports (GPU only in practice)."""
    try:
        from liger_kernel.ops.rms_norm import LigerRMSNormFunction
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss, liger_rotary_pos_emb
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return {}
    flce = LigerFusedLinearCrossEntropyLoss()
    return {
        "linear_cross_entropy": lambda h, w, c: flce(w, h, c["labels"]),
        "rms_norm": lambda x, w, c: LigerRMSNormFunction.apply(x, w, c["eps"]),
        "swiglu": lambda g, u, c: LigerSiLUMulFunction.apply(g, u),
        "apply_rope": lambda x, c: liger_rotary_pos_emb(x, x, c["cos"], c["sin"])[0],
    }


def build_cases(ops: list[str], size: str, device: torch.device, dtype: torch.dtype) -> list[Case]:
    liger = _liger()
    cases = []

    def rand(*shape, scale=1.0, grad=True):
        t = (torch.randn(*shape, device=device, dtype=torch.float32) * scale).to(dtype)
        return t.requires_grad_(grad)

    for op in ops:
        p = SIZES[op][size]
        if op == "linear_cross_entropy":
            def build(p=p):
                labels = torch.randint(0, p["v"], (p["n"],), device=device)
                labels[::10] = -100
                return [rand(p["n"], p["d"]), rand(p["v"], p["d"], scale=p["d"] ** -0.5)], {"labels": labels}
            impls = {"triton": lambda h, w, c: K.linear_cross_entropy(h, w, c["labels"]),
                     "torch": lambda h, w, c: R.linear_cross_entropy(h, w, c["labels"])}
        elif op == "token_logprobs_entropy":
            def build(p=p):
                labels = torch.randint(0, p["v"], (p["n"],), device=device)
                return [rand(p["n"], p["d"]), rand(p["v"], p["d"], scale=p["d"] ** -0.5)], {"labels": labels}
            impls = {"triton": lambda h, w, c: K.token_logprobs_entropy(h, w, c["labels"], 0.9),
                     "torch": lambda h, w, c: R.token_logprobs_entropy(h, w, c["labels"], 0.9)}
        elif op == "rms_norm":
            def build(p=p):
                return [rand(p["n"], p["d"]), rand(p["d"])], {"eps": 1e-5}
            impls = {"triton": lambda x, w, c: K.rms_norm(x, w, c["eps"]),
                     "torch": lambda x, w, c: R.rms_norm(x, w, c["eps"])}
        elif op == "apply_rope":
            def build(p=p):
                pos = torch.arange(p["t"], device=device).expand(p["b"], p["t"])
                inv = 1.0 / (500000.0 ** (torch.arange(0, p["d"], 2, device=device) / p["d"]))
                cos, sin = R.rope_cos_sin(pos, inv)
                x = rand(p["b"], p["t"], p["h"], p["d"], grad=False).transpose(1, 2).requires_grad_()
                return [x], {"cos": cos.to(dtype), "sin": sin.to(dtype)}
            impls = {"triton": lambda x, c: K.apply_rope(x, c["cos"], c["sin"]),
                     "torch": lambda x, c: R.apply_rope(x, c["cos"], c["sin"])}
        else:  # swiglu
            def build(p=p):
                return [rand(p["n"], p["d"]), rand(p["n"], p["d"])], {}
            impls = {"triton": lambda g, u, c: K.swiglu(g, u), "torch": lambda g, u, c: R.swiglu(g, u)}
        if op in liger and device.type == "cuda":
            impls["liger"] = liger[op]
        cases.append(Case(op, p, build, impls))
    return cases


def _fwd_bwd(fn, leaves: list[torch.Tensor], consts: dict) -> None:
    out = fn(*leaves, consts)
    outs = out if isinstance(out, tuple) else (out,)
    torch.autograd.grad(outs, leaves, [torch.ones_like(o) for o in outs])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _cpu_reset_peak() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _cpu_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_bytes(fn, leaves, consts, device: torch.device) -> int:
    """Memory one forward + backward adds on top of its inputs, at its peak."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _fwd_bwd(fn, leaves, consts)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    _cpu_reset_peak()
    base = _cpu_kib("VmRSS")
    _fwd_bwd(fn, leaves, consts)
    return (_cpu_kib("VmHWM") - base) * 1024


def time_ms(fn, leaves, consts, device: torch.device, repeats: int) -> float:
    """Median wall time of forward + backward in milliseconds."""
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        _fwd_bwd(fn, leaves, consts)
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def run_case(case: Case, device: torch.device, repeats: int) -> list[dict]:
    leaves, consts = case.build()
    rows = []
    for impl, fn in case.impls.items():
        _fwd_bwd(fn, leaves, consts)  # warm-up: compilation, interpreter start-up
        mem = peak_bytes(fn, leaves, consts, device)
        ms = time_ms(fn, leaves, consts, device, repeats)
        rows.append({"op": case.op, "impl": impl, "ms": round(ms, 3), "peak_bytes": mem, **case.params})
        console.print(f"{case.op:24s} {impl:7s} {ms:10.2f} ms  peak +{mem / 2**20:9.1f} MiB")
    base = next(r for r in rows if r["impl"] == "torch")
    for r in rows:
        r["speedup_vs_torch"] = round(base["ms"] / r["ms"], 3) if r["ms"] else None
        r["memory_ratio_vs_torch"] = round(base["peak_bytes"] / r["peak_bytes"], 3) if r["peak_bytes"] > 0 else None
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, Triton interpreter)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", choices=list(SIZES), default=list(SIZES), help="ops to run")
    parser.add_argument("--size", choices=["small", "large"], help="default: large on GPU, small on CPU")
    parser.add_argument("--repeats", type=int, help="timed repeats (default: 20 on GPU, 2 on CPU)")
    parser.add_argument("--out", help="also write the JSON result to this file (atomically)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = args.size or ("large" if device.type == "cuda" else "small")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    repeats = args.repeats or (20 if device.type == "cuda" else 2)
    if device.type == "cpu":
        torch.set_num_threads(min(4, os.cpu_count() or 1))
    console.print(f"kernels benchmark on {device_name(device)}, size={size}, dtype={dtype}")
    rows = [r for case in build_cases(args.ops, size, device, dtype) for r in run_case(case, device, repeats)]
    head_op = "linear_cross_entropy" if "linear_cross_entropy" in args.ops else args.ops[0]
    ours = next(r for r in rows if r["op"] == head_op and r["impl"] == "triton")
    base = next(r for r in rows if r["op"] == head_op and r["impl"] == "torch")
    result = {
        "name": "kernels",
        "metric": f"{head_op}_peak_memory",
        "unit": "bytes",
        "ours": ours["peak_bytes"],
        "baseline": base["peak_bytes"],
        "baseline_name": "torch reference (codekiln.kernels.reference)",
        "ratio": round(base["peak_bytes"] / max(ours["peak_bytes"], 1), 3),
        "params": {"size": size, "dtype": str(dtype).removeprefix("torch."), "repeats": repeats,
                   "device": device_name(device), "torch": torch.__version__, "ops": args.ops},
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "results": rows,
    }
    line = json.dumps(result)
    if args.out:
        directory = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
            f.write(json.dumps(result, indent=1) + "\n")
        os.replace(f.name, args.out)
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
