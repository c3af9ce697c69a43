"""A tiny random model exported to a temp folder and served over HTTP by ``codekiln serve`` (session-wide)."""

from __future__ import annotations

import pytest

from .helpers import tiny_export


@pytest.fixture(scope="session")
def tiny_model_dir():
    return tiny_export()


@pytest.fixture(scope="session")
def served_url(tiny_model_dir):
    from codekiln.workloads.llm.local import local_llm_server

    with local_llm_server(tiny_model_dir, threads=1) as url:
        yield url
