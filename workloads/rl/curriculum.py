"""Prompt sampling with a pass-rate curriculum (Seed-Coder retires prompts above 87.5%)."""

from __future__ import annotations

import random


class Curriculum:
    """Tracks each task's latest group pass rate and retires tasks above the ceiling."""

    def __init__(self, task_ids: list[str], ceiling: float = 0.875, min_active: int = 1, enabled: bool = True):
        self.task_ids = list(task_ids)
        self.ceiling, self.min_active, self.enabled = ceiling, min_active, enabled
        self.pass_rates: dict[str, float] = {}
        self.retired: list[str] = []

    def observe(self, task_id: str, pass_rate: float) -> None:
        self.pass_rates[task_id] = pass_rate

    def update(self) -> list[str]:
        """Retire tasks whose pass rate exceeds the ceiling (keeping ``min_active``); return new retirees."""
        if not self.enabled:
            return []
        new = []
        candidates = sorted(
            (t for t in self.active() if self.pass_rates.get(t, 0.0) > self.ceiling),
            key=lambda t: -self.pass_rates[t],
        )
        for t in candidates:
            if len(self.active()) <= self.min_active:
                break
            self.retired.append(t)
            new.append(t)
        return new

    def active(self) -> list[str]:
        retired = set(self.retired)
        return [t for t in self.task_ids if t not in retired]

    def state_dict(self) -> dict:
        return {"pass_rates": dict(self.pass_rates), "retired": list(self.retired)}

    def load_state_dict(self, state: dict) -> None:
        self.pass_rates = dict(state["pass_rates"])
        self.retired = list(state["retired"])


class PromptSampler:
    """Seeded epoch-wise shuffling over the curriculum's active tasks; resumable."""

    def __init__(self, curriculum: Curriculum, seed: int = 0):
        self.curriculum = curriculum
        self.rng = random.Random(seed)
        self.queue: list[str] = []

    def next(self, n: int) -> list[str]:
        """The next ``n`` active task ids (reshuffling at each epoch boundary)."""
        out: list[str] = []
        active = set(self.curriculum.active())
        if not active:
            raise RuntimeError("the curriculum retired every task")
        while len(out) < n:
            self.queue = [t for t in self.queue if t in active]
            if not self.queue:
                self.queue = sorted(active)
                self.rng.shuffle(self.queue)
            out.append(self.queue.pop(0))
        return out

    def state_dict(self) -> dict:
        return {"rng": self.rng.getstate(), "queue": list(self.queue)}

    def load_state_dict(self, state: dict) -> None:
        rng = state["rng"]
        self.rng.setstate((rng[0], tuple(rng[1]), rng[2]))
        self.queue = list(state["queue"])
