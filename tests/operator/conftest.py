"""Fixtures of the operator tests: a k8s emulator and the real operator, shared per module."""

from __future__ import annotations

import uuid

import pytest
from operator_cluster import Cluster, OperatorThread, start_emulator


@pytest.fixture(scope="module")
def k8s():
    emulator = start_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def operator(k8s):
    runner = OperatorThread(k8s.url).start()
    yield runner
    runner.stop()


@pytest.fixture
def cluster(k8s, operator):
    """A fresh namespace in the shared emulator, watched by the shared operator."""
    return Cluster(k8s, f"t-{uuid.uuid4().hex[:8]}")
