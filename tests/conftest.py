"""Session-wide test settings."""

from __future__ import annotations

import os
import shutil

# Triton kernels run through the interpreter on machines without a GPU. The flag must be
# set before anything imports triton, so it is set here, before any test module loads.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")


# ---- shared by tests/llm, tests/eval and the synthesis tests: one tiny served model, one sandbox per session
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir():
    """A random-weight tiny Llama export with codekiln's BPE tokenizer (tests/llm/helpers.py)."""
    from llm.helpers import tiny_export

    return tiny_export()


@pytest.fixture(scope="session")
def served_url(tiny_model_dir):
    """``codekiln serve`` (the real command line) of ``tiny_model_dir`` over HTTP (base URL ending in /v1)."""
    from codekiln.workloads.llm.local import local_llm_server

    with local_llm_server(tiny_model_dir, threads=1, module="codekiln.operator.cli") as url:
        yield url


@pytest.fixture(scope="session")
def local_sandbox_url():
    """A real sandbox server (bubblewrap isolation) for scoring model-written code."""
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap (bwrap) is required: apt-get install bubblewrap (the sandbox cannot isolate programs)")
    from codekiln.workloads.sandbox.local import local_server

    with local_server() as url:
        yield url
