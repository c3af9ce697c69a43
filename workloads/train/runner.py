"""Entry points: ``run_local(resource)`` (``codekiln run --local``) and ``main`` (in-pod, under torchrun)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from codekiln.workloads.atomic_io import atomic_write_text
from codekiln.workloads.schema import error_lines
from codekiln.workloads.train.config import TrainConfig


class DataMissing(RuntimeError):
    """The training data (a DataPipeline's output) is not there."""


def parse_config(resource: dict) -> TrainConfig:
    """``spec.training`` of a PretrainRun (wire form) -> TrainConfig."""
    try:
        training = resource["spec"]["training"]
    except (KeyError, TypeError) as exc:
        raise ValueError("spec.training: missing (a PretrainRun needs spec.training)") from exc
    return TrainConfig.model_validate(training)


def check_data(cfg: TrainConfig) -> None:
    """Fail early and clearly when the data is missing."""
    path = Path(cfg.data.path)
    if cfg.objective == "pretrain" and not (path / "meta.json").exists():
        raise DataMissing(
            f"data.path: no packed dataset at {path} (meta.json missing) - run the DataPipeline first, "
            "e.g. `codekiln run --local -f examples/datapipeline.yaml`"
        )
    if cfg.objective == "sft" and not path.is_file():
        raise DataMissing(f"data.path: no chat JSONL file at {path}")
    if cfg.init_from and not Path(cfg.init_from).is_dir():
        raise DataMissing(f"initFrom: no Hugging Face folder at {cfg.init_from} - run the PretrainRun that exports it")


def train_in_process(cfg: TrainConfig) -> dict:
    """Run (this process's part of) the training described by ``cfg``; returns the summary."""
    from codekiln.workloads.train.engine import init_distributed
    from codekiln.workloads.train.trainer import Trainer

    env = init_distributed(need_group=cfg.backend == "deepspeed")
    summary = Trainer(cfg, env).run()
    if env.rank == 0:
        out = Path(cfg.output_dir) / "summary.json"
        atomic_write_text(out, json.dumps(summary, indent=2))
    return summary


def _errors(exc: ValidationError) -> str:
    return "; ".join(error_lines(exc, ("spec", "training")))


def _checked_config(resource: dict) -> TrainConfig | None:
    """The validated config with its data present, or ``None`` after printing why not."""
    try:
        cfg = parse_config(resource)
        check_data(cfg)
    except ValidationError as exc:
        print(f"PretrainRun invalid: {_errors(exc)}", file=sys.stderr)
        return None
    except (ValueError, DataMissing) as exc:
        print(f"PretrainRun: {exc}", file=sys.stderr)
        return None
    return cfg


def run_local(resource: dict) -> int:
    """Train on this machine: in process, or ``nprocPerNode`` local processes via torchrun."""
    cfg = _checked_config(resource)
    if cfg is None:
        return 2
    nproc = int(resource.get("spec", {}).get("nprocPerNode", 1))  # spec.nprocPerNode, beside spec.nodes
    if nproc == 1:
        summary = train_in_process(cfg)
        print(json.dumps(summary))
        return 0
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(resource, fh)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "codekiln.workloads.train", "--config", fh.name]
    try:
        return subprocess.call(cmd)
    finally:
        os.unlink(fh.name)


def main(argv: list[str] | None = None) -> int:
    """``python -m codekiln.workloads.train --config resource.json`` (torchrun sets RANK/WORLD_SIZE)."""
    import argparse

    parser = argparse.ArgumentParser(prog="codekiln.workloads.train", description=main.__doc__)
    parser.add_argument("--config", required=True, help="resource JSON (or YAML) with spec.training")
    from codekiln.workloads.progress import add_log_arguments, setup_logging

    add_log_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_format)
    text = Path(args.config).read_text()
    if args.config.endswith((".yaml", ".yml")):
        import yaml

        resource = yaml.safe_load(text)
    else:
        resource = json.loads(text)
    cfg = _checked_config(resource)
    if cfg is None:
        return 2
    summary = train_in_process(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0
