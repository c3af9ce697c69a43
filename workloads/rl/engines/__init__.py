"""Rollout engines behind one interface (:class:`RolloutEngine`)."""

from codekiln.workloads.rl.engines.base import Completion, RolloutEngine, SamplingParams, build_engine

__all__ = ["Completion", "RolloutEngine", "SamplingParams", "build_engine"]
