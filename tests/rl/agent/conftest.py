"""Fixtures shared by the agentic RL tests: a real sandbox server per test module."""

from __future__ import annotations

import shutil

import pytest

from codekiln.workloads.sandbox.local import local_server


@pytest.fixture(scope="module")
def url():
    """A fresh sandbox server (bubblewrap isolation) per module, so each module sees only its own sessions."""
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap (bwrap) is required: apt-get install bubblewrap")
    with local_server() as u:
        yield u
