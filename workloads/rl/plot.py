"""Reward curve PNG of an RL run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from codekiln.workloads.atomic_io import atomic_path


def _smooth(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out


def plot_reward_curve(history: list[dict], evals: dict, path: str | Path, title: str = "RL run") -> Path:
    """Per-step mean reward and pass rate (raw and moving average) plus start/end evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, color in (("reward_mean", "tab:blue"), ("pass_rate", "tab:green")):
        vals = [h.get(key, 0.0) for h in history]
        ax.plot(steps, vals, color=color, alpha=0.3, lw=1)
        ax.plot(steps, _smooth(vals, 5), color=color, lw=2, label=f"{key} (5-step mean)")
    for label, marker in (("start", "o"), ("end", "s")):
        if label in evals:
            x = 0 if label == "start" else (steps[-1] if steps else 0)
            ax.scatter([x], [evals[label]["pass_rate"]], color="black", marker=marker, zorder=5,
                       label=f"eval pass rate ({label}) {evals[label]['pass_rate']:.2f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, keep_suffix=True) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
