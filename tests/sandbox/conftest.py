"""A real sandbox server (subprocess, real bubblewrap isolation) shared by the sandbox tests."""

from __future__ import annotations

import shutil

import httpx
import pytest

from codekiln.workloads.sandbox.local import local_server

from .helpers import SECRET, make_config


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("sandbox-work"))


@pytest.fixture(scope="session")
def server(work_dir) -> str:
    """Base URL of a sandbox server whose environment holds a secret no program may see."""
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap (bwrap) is required: apt-get install bubblewrap")
    with local_server(make_config(work_dir), env={"CODEKILN_TEST_SECRET": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET}) \
            as url:
        yield url


@pytest.fixture(scope="session")
def http(server) -> httpx.Client:
    with httpx.Client(base_url=server, timeout=120) as client:
        yield client
