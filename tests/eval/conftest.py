"""Evaluation tests score in the session's sandbox (tests/conftest.py: ``local_sandbox_url``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def sandbox_url(local_sandbox_url):
    return local_sandbox_url
