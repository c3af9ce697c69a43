"""pytest fixtures: an emulator per test on a real port, clients configured to it.

Use from a conftest with ``from k8s_emulator.fixtures import *``; override ``k8s_crds`` and
``k8s_namespaces`` in your conftest to install your CRDs and namespaces.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from .client import KubeClient
from .server import EmulatorThread

__all__ = ["k8s", "k8s_client", "k8s_crds", "k8s_namespaces"]


@pytest.fixture
def k8s_crds() -> list[dict[str, Any]]:
    """CRDs installed in the emulator before the test (override to add yours)."""
    return []


@pytest.fixture
def k8s_namespaces() -> list[str]:
    """Namespaces created before the test (``default`` always exists)."""
    return ["default"]


@pytest.fixture
def k8s(k8s_crds: list[dict[str, Any]], k8s_namespaces: list[str], tmp_path: pathlib.Path) -> Iterator[EmulatorThread]:
    """A running emulator; ``KUBECONFIG`` and the kubernetes client point at it during the test."""
    with EmulatorThread(crds=k8s_crds, namespaces=k8s_namespaces, bookmark_interval=1.0) as thread:
        thread.activate(tmp_path / "kubeconfig")
        yield thread


@pytest.fixture
def k8s_client(k8s: EmulatorThread) -> Iterator[KubeClient]:
    """An HTTP client bound to the ``k8s`` emulator."""
    client = KubeClient(k8s)
    yield client
    client.close()
