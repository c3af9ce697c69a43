"""Agentic coding RL (KAT-Dev): tool protocol, multi-turn rollouts in sandbox sessions, SWE-style tasks,
trajectory data and trajectory training. See README.md in this folder."""
