"""``codekiln run --local`` with several resources: spec.after order, skips, cycles, pools."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from codekiln.operator.cli import main
from codekiln.operator.local_plan import plan_local_run
from codekiln.operator.resources import RESOURCE_KINDS

from .factories import datapipeline, pretrainrun, sandboxpool, with_

JSON_PKG = Path(os.__file__).parent / "json"


def _model(doc: dict):
    return RESOURCE_KINDS[doc["kind"]].model_validate(doc)


def _named(doc: dict, name: str, after: list | None = None) -> dict:
    doc = with_(doc, "metadata.name", name)
    return with_(doc, "spec.after", after) if after else doc


def test_after_orders_runs_stably_and_notes_outside_dependencies() -> None:
    rl_like = _named(pretrainrun(), "second", [{"kind": "PretrainRun", "name": "first"}])
    first = _named(pretrainrun(), "first", [{"kind": "DataPipeline", "name": "elsewhere"}])
    other = _named(datapipeline(), "other")
    plan = plan_local_run([_model(d) for d in (rl_like, other, first, sandboxpool())])
    assert [r.metadata.name for r in plan.order] == ["other", "first", "second"]
    assert any("DataPipeline 'elsewhere' is not part of this run" in n for n in plan.notes)
    assert any(n.startswith("SandboxPool") for n in plan.notes)
    assert [r.kind_name for r in plan_local_run([_model(sandboxpool())]).order] == ["SandboxPool"]  # alone: served


def test_cycle_is_a_clear_error() -> None:
    a = _named(pretrainrun(), "a", [{"kind": "PretrainRun", "name": "b"}])
    b = _named(pretrainrun(), "b", [{"kind": "PretrainRun", "name": "a"}])
    with pytest.raises(ValueError, match="spec.after forms a cycle among: PretrainRun 'a', PretrainRun 'b'"):
        plan_local_run([_model(a), _model(b)])


def _pipeline(name: str, out: Path, src: Path, after: list | None = None) -> dict:
    doc = {"apiVersion": "codekiln.dev/v1alpha1", "kind": "DataPipeline", "metadata": {"name": name},
           "spec": {"pipeline": {"outputDir": str(out), "stages": [{"name": "read", "shards": 1, "steps": [
               {"readFiles": {"paths": [str(src)], "languages": ["python"]}}]}]}}}
    if after:
        doc["spec"]["after"] = after
    return doc


def test_run_local_follows_after_and_skips_dependents_of_a_failure(tmp_path: Path, capsys) -> None:
    # written in the wrong order on purpose; the folder form of -f
    folder = tmp_path / "chain"
    folder.mkdir()
    docs = [_pipeline("late", tmp_path / "late", JSON_PKG, [{"kind": "DataPipeline", "name": "early"}]),
            _pipeline("early", tmp_path / "early", JSON_PKG)]
    (folder / "chain.yaml").write_text(yaml.safe_dump_all(docs))
    assert main(["run", "--local", "-f", str(folder)]) == 0
    err = capsys.readouterr().err
    assert err.index("DataPipeline 'early'") < err.index("DataPipeline 'late'")
    finished = {name: (tmp_path / name / "stats.json").stat().st_mtime_ns for name in ("early", "late")}
    assert finished["early"] <= finished["late"]

    broken = [_pipeline("first", tmp_path / "f", tmp_path / "no-such-dir"),
              _pipeline("then", tmp_path / "t", JSON_PKG, [{"kind": "DataPipeline", "name": "first"}])]
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump_all(broken))
    assert main(["run", "--local", "-f", str(tmp_path / "broken.yaml")]) != 0
    err = capsys.readouterr().err
    assert "skipping DataPipeline 'then': spec.after DataPipeline 'first' did not succeed" in err
    assert not (tmp_path / "t").exists()
