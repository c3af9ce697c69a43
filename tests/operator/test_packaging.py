"""Each image's extras hold every runtime dependency of its entry points (no dev tool needed in a pod).

The probe (``packaging_probe.py``) runs in a fresh interpreter with every installed distribution outside
``codekiln[<extras>]`` blocked, imports the entry points and every module of their packages, and scans
the loaded codekiln modules for lazy imports of blocked packages. A module needing a package that is not
installed on this machine at all (vLLM, Triton on CPU) is reported, not failed: it cannot be checked here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("packaging_probe.py")
# Dockerfile targets: what each image installs and what it runs.
IMAGES = {
    "operator": {"extras": [], "modules": ["codekiln.operator.cli", "codekiln.operator.handlers",
                                           "codekiln.operator.app", "codekiln.operator.kubectl_plugin"],
                 "walk": ["codekiln.operator"]},
    "workload": {"extras": ["data", "train", "rl", "kernels", "vllm"],
                 "modules": ["codekiln.workloads.train.runner", "codekiln.workloads.rl.__main__",
                             "codekiln.workloads.data.__main__", "codekiln.workloads.sandbox.humaneval"],
                 "walk": ["codekiln.workloads"]},
    "sandbox": {"extras": ["sandbox"], "modules": ["codekiln.workloads.sandbox.__main__",
                                                  "codekiln.workloads.sandbox.server"], "walk": []},
}


def probe(image: str) -> dict:
    done = subprocess.run([sys.executable, str(PROBE), json.dumps(IMAGES[image])], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("image", list(IMAGES))
def test_entry_points_import_with_only_the_image_extras(image):
    report = probe(image)
    assert report["imported"] > 0
    assert report["failed"] == {}, json.dumps(report["failed"], indent=1)[:4000]
    assert report["lazy_missing"] == {}, report["lazy_missing"]


def test_the_probe_catches_a_dev_only_import():
    """The check can fail: pytest (dev only) is blocked for the operator image."""
    done = subprocess.run([sys.executable, str(PROBE), json.dumps(
        {"extras": [], "modules": ["pytest", "codekiln.operator.cli"], "walk": []})],
        capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "pytest" in report["failed"] and "codekiln[]" in report["failed"]["pytest"]
