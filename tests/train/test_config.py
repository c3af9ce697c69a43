"""Bad PretrainRun configs are rejected with the field named; missing data says what to run."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from codekiln.workloads.train.config import TrainConfig
from codekiln.workloads.train.runner import run_local

BASE = {"data": {"path": "x"}, "stages": [{"name": "a", "steps": 10, "lr": 1e-3, "seqLen": 64}]}


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"stages": []}, "stages"),
        ({"stages": [{"name": "a", "lr": 1e-3, "seqLen": 64}]}, "steps or tokens"),
        ({"stages": [{"name": "a", "steps": 1, "tokens": 5, "lr": 1e-3, "seqLen": 64}]}, "steps or tokens"),
        ({"stages": [{"name": "a", "steps": 1, "lr": -1, "seqLen": 64}]}, "stages.0.lr"),
        ({"stages": [{"name": "a", "steps": 1, "lr": 1e-3, "seqLen": 64, "fimRate": 2}]}, "stages.0.fimRate"),
        ({"stages": [{"name": "a", "steps": 1, "lr": 1e-3, "seqLen": 64, "schedule": "linear"}]}, "schedule"),
        ({"stages": [{"name": "a", "steps": 1, "lr": 1e-3, "seqLen": 99999}]}, "maxSeqLen"),
        ({"stages": [BASE["stages"][0], BASE["stages"][0]]}, "duplicate stage name"),
        ({"zeroStage": 4}, "zeroStage"),
        ({"backend": "fsdp"}, "backend"),
        ({"microBatchSize": 0}, "microBatchSize"),
        ({"checkpoint": {"keepLast": 0}}, "checkpoint.keepLast"),
        ({"model": {"preset": "tiny", "nHeads": 4, "nKvHeads": 3}}, "nKvHeads"),
        ({"learningRate": 1.0}, "learningRate"),
        ({"data": {}}, "data.path"),
    ],
)
def test_bad_config_names_the_field(patch, field):
    with pytest.raises(ValidationError) as info:
        TrainConfig.model_validate({**BASE, **patch})
    text = str(info.value).replace("\n", " ")
    assert field.split(".")[-1] in text


def _resource(training: dict) -> dict:
    return {"apiVersion": "codekiln.dev/v1alpha1", "kind": "PretrainRun", "metadata": {"name": "t"},
            "spec": {"training": training}}


def test_run_local_reports_invalid_field(capsys):
    assert run_local(_resource({**BASE, "gradAccumSteps": 0})) == 2
    assert "spec.training.gradAccumSteps: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_run_local_without_data_says_to_run_the_pipeline_first(tmp_path, capsys):
    training = {**BASE, "data": {"path": str(tmp_path / "missing")}, "outputDir": str(tmp_path / "out")}
    assert run_local(_resource(training)) == 2
    err = capsys.readouterr().err
    assert "data.path" in err and "examples/datapipeline.yaml" in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_stage_tokens_convert_to_steps_of_the_global_batch():
    from codekiln.workloads.train.trainer import stage_steps

    cfg = TrainConfig.model_validate({**BASE, "microBatchSize": 4, "gradAccumSteps": 2,
                                      "stages": [{"name": "a", "tokens": 10_000, "lr": 1e-3, "seqLen": 64}]})
    assert stage_steps(cfg, cfg.stages[0], world_size=2) == 10  # 10_000 / (4 * 2 * 2 * 64) rounded up
