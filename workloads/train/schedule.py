"""Learning-rate schedules per stage: linear warmup, then constant / step / cosine / WSD."""

from __future__ import annotations

import math

from codekiln.workloads.train.config import TrainStageConfig


def stage_lr(stage: TrainStageConfig, step: int, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based, within the stage) of a stage lasting ``total_steps``.

    Args:
        stage: the stage config (lr, min_lr, schedule, warmup, step/WSD knobs).
        step: optimizer step inside the stage, 0-based.
        total_steps: the stage's length in optimizer steps.
    """
    peak, floor = stage.lr, stage.min_lr
    warm = stage.lr_warmup_steps
    if step < warm:
        return peak * (step + 1) / warm
    after, span = step - warm, max(1, total_steps - warm)
    if stage.schedule == "constant":
        return peak
    if stage.schedule == "step":
        return max(floor, peak * stage.step_decay_factor ** (after // stage.step_decay_every_steps))
    if stage.schedule == "cosine":
        progress = min(1.0, after / span)
        return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))
    # wsd: warmup-stable-decay, linear decay over the last wsd_decay_fraction of the stage
    decay_steps = max(1, round(stage.wsd_decay_fraction * total_steps))
    decay_start = total_steps - decay_steps
    if step < decay_start:
        return peak
    return peak + (floor - peak) * (step - decay_start + 1) / decay_steps
