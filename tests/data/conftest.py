"""Real corpora on disk for the data pipeline tests, and a fluent resource factory."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from codekiln.workloads.data.corpora import SITE_PACKAGES  # noqa: F401 (re-exported to the tests)

STDLIB = Path(sysconfig.get_paths()["stdlib"])
REPO_ROOT = Path(__file__).resolve().parents[2]


def stdlib_py_files() -> list[Path]:
    """All ``.py`` files of the standard library (site-packages excluded)."""
    return sorted(p for p in STDLIB.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def pipeline_resource(output_dir: Path, stages: list[dict], name: str = "test-pipeline") -> dict:
    """A DataPipeline resource in wire form."""
    return {
        "apiVersion": "codekiln.dev/v1alpha1",
        "kind": "DataPipeline",
        "metadata": {"name": name},
        "spec": {"pipeline": {"outputDir": str(output_dir), "stages": stages}},
    }


def stage(name: str, shards: int, *steps: tuple[str, dict] | str) -> dict:
    """``stage("ingest", 2, ("read_files", {...}), "syntax_filter")``."""
    return {
        "name": name,
        "shards": shards,
        "steps": [{"type": s, "params": {}} if isinstance(s, str) else {"type": s[0], "params": s[1]} for s in steps],
    }


@pytest.fixture(scope="session")
def stdlib_files() -> list[Path]:
    files = stdlib_py_files()
    assert len(files) > 1000, f"expected the CPython stdlib under {STDLIB}"
    return files
