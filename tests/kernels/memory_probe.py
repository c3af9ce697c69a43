"""Subprocess probe: peak resident memory (bytes) of one linear-CE forward+backward on CPU.

Run as ``python memory_probe.py {fused,reference} N V D``; prints one JSON line. The
peak comes from the kernel's high-water mark (``VmHWM``), reset after a small warm-up
through ``/proc/self/clear_refs`` so imports and interpreter start-up do not count.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

from codekiln.kernels import linear_cross_entropy, reference  # noqa: E402


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main() -> None:
    impl, n, v, d = sys.argv[1], *map(int, sys.argv[2:5])
    torch.set_num_threads(int(os.environ.get("PROBE_THREADS", "2")))
    fn = linear_cross_entropy if impl == "fused" else reference.linear_cross_entropy
    gen = torch.Generator().manual_seed(0)
    for size in ((64, 1000, d), (n, v, d)):  # warm-up, then the measured run
        hidden = (torch.randn(size[0], size[2], generator=gen)).requires_grad_()
        weight = (torch.randn(size[1], size[2], generator=gen) * 0.05).requires_grad_()
        labels = torch.randint(0, size[1], (size[0],), generator=gen)
        reset = _reset_peak()
        base = _status_kib("VmRSS")
        start = time.perf_counter()
        loss = fn(hidden, weight, labels)
        loss.backward()
        elapsed = time.perf_counter() - start
        peak = _status_kib("VmHWM")
    print(json.dumps({
        "impl": impl, "n_tokens": n, "vocab": v, "dim": d, "loss": loss.item(), "seconds": elapsed,
        "peak_extra_bytes": (peak - base) * 1024, "peak_reset": reset,
        "grad_hidden_norm": hidden.grad.norm().item(), "grad_weight_norm": weight.grad.norm().item(),
    }))


if __name__ == "__main__":
    main()
