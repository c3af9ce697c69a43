"""Real corpora on disk for the data pipeline tests, and a fluent resource factory."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from pydantic.alias_generators import to_camel

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


def stage(name: str, shards: int, *steps: tuple[str, dict] | str, input: str | None = None,
          dedup: dict | None = None) -> dict:
    """``stage("pack", 2, ("fim", {...}), "pack", input="dedup")``: steps by registered name, one key each."""
    out: dict = {"name": name, "shards": shards}
    if input is not None:
        out["input"] = input
    if dedup is not None:
        out["dedup"] = dedup
    out["steps"] = [{to_camel(s): {}} if isinstance(s, str) else {to_camel(s[0]): s[1]} for s in steps]
    return out


@pytest.fixture(scope="session")
def stdlib_files() -> list[Path]:
    files = stdlib_py_files()
    assert len(files) > 1000, f"expected the CPython stdlib under {STDLIB}"
    return files
