"""A real sandbox server and a tiny served model shared by the evaluation tests."""

from __future__ import annotations

import shutil

import pytest
from llm.helpers import tiny_export


@pytest.fixture(scope="session")
def sandbox_url():
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap (bwrap) is not installed: the sandbox cannot isolate programs")
    from codekiln.workloads.sandbox.local import local_server

    with local_server() as url:
        yield url


@pytest.fixture(scope="session")
def tiny_model_dir():
    return tiny_export()


@pytest.fixture(scope="session")
def served_url(tiny_model_dir):
    from codekiln.workloads.llm.local import local_llm_server

    with local_llm_server(tiny_model_dir, threads=1) as url:
        yield url
