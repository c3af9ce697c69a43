"""Learning-rate schedules."""

from __future__ import annotations

import pytest

from codekiln.workloads.train.config import TrainStageConfig
from codekiln.workloads.train.schedule import stage_lr


def _stage(**kw) -> TrainStageConfig:
    return TrainStageConfig(name="s", steps=100, lr=1.0, seq_len=64, **kw)


def test_warmup_then_constant():
    s = _stage(lr_warmup_steps=4)
    assert [stage_lr(s, i, 100) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_step_decay_seed_coder_style():
    s = _stage(schedule="step", step_decay_every_steps=10, step_decay_factor=0.1)
    assert stage_lr(s, 9, 100) == 1.0
    assert stage_lr(s, 10, 100) == pytest.approx(0.1)
    assert stage_lr(s, 25, 100) == pytest.approx(0.01)


def test_cosine_reaches_min_lr():
    s = _stage(schedule="cosine", min_lr=0.1, lr_warmup_steps=10)
    assert stage_lr(s, 10, 100) == pytest.approx(1.0)
    assert stage_lr(s, 55, 100) == pytest.approx(0.55)
    assert stage_lr(s, 100, 100) == pytest.approx(0.1)


def test_wsd_is_stable_then_decays_linearly():
    s = _stage(schedule="wsd", wsd_decay_fraction=0.2, min_lr=0.0)
    assert stage_lr(s, 79, 100) == 1.0
    assert stage_lr(s, 80, 100) == pytest.approx(0.95)
    assert stage_lr(s, 99, 100) == pytest.approx(0.0)
