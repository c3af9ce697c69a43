"""Run an RLRun locally (``codekiln run --local -f examples/rlrun``) or in a pod."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from pydantic import ValidationError

from codekiln.workloads import contract
from codekiln.workloads.atomic_io import atomic_write_text
from codekiln.workloads.progress import progress_reporter
from codekiln.workloads.rl.config import RLConfig
from codekiln.workloads.schema import error_lines

EVAL_SAMPLES_PER_TASK = 16


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _write_json(path: Path, payload: dict) -> None:
    if not _is_main_rank():
        return
    atomic_write_text(path, json.dumps(payload, indent=1, default=str))


def _metrics_server():
    """One Prometheus server per pod (local rank 0 binds CODEKILN_METRICS_PORT; see rl/metrics.py)."""
    from codekiln.workloads.rl.metrics import start_metrics_server

    return start_metrics_server()


def train(cfg: RLConfig, sandbox_url: str, out_dir: Path, name: str = "rlrun", console=None) -> dict:
    """Warm start (or resume), evaluate, train all stages, evaluate; write metrics, plot, checkpoint."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codekiln.workloads.rl.metrics import export as export_metrics
    from codekiln.workloads.rl.plot import plot_reward_curve
    from codekiln.workloads.rl.rewards import SandboxScorer
    from codekiln.workloads.rl.trainer import RLTrainer

    console = console or Console(stderr=True)
    trainer = RLTrainer(cfg, SandboxScorer(sandbox_url, cfg.reward_timeout_s), out_dir)
    metrics_path = out_dir / "metrics.json"
    reporter, gauges = progress_reporter(), _metrics_server()
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"))
    with Progress(*cols, console=console, transient=False) as bars:
        resumed = trainer.try_resume()
        evals = json.loads(metrics_path.read_text()).get("evals", {}) if resumed and metrics_path.exists() else {}
        if resumed:
            console.print(f"resumed {name} from step {trainer.step}")
        else:
            sft = bars.add_task("warm-start SFT", total=cfg.warm_start.sft_steps or 1, info="")
            trainer.warm_start(on_step=lambda s, loss: bars.update(sft, completed=s, info=f"loss {loss:.3f}"))
            bars.update(sft, completed=cfg.warm_start.sft_steps or 1)
            trainer.finish_setup()
            evals["start"] = trainer.evaluate(EVAL_SAMPLES_PER_TASK)
            console.print(f"start: pass rate {evals['start']['pass_rate']:.3f}, "
                          f"mean reward {evals['start']['reward_mean']:.3f}")
        total = cfg.total_steps
        rl = bars.add_task(f"RL ({cfg.algorithm})", total=total, completed=trainer.step, info="")
        while trainer.step < total:
            m = trainer.train_step()
            info = f"reward {m['reward_mean']:.2f} pass {m['pass_rate']:.2f} active {m['active_tasks']}"
            bars.update(rl, completed=trainer.step, info=info)
            reporter.update(step=trainer.step, total_steps=total, stage=m["stage"], loss=m["loss"],
                            reward=m["reward_mean"], throughput=m.get("trained_rollouts", 0) / m["step_time_s"],
                            throughput_unit="rollouts/s", message=info)
            export_metrics(gauges, m)
            every = cfg.checkpoint.every_steps
            if every and trainer.step % every == 0:
                trainer.save()
                _write_json(metrics_path, {"history": trainer.history, "evals": evals})
    evals["end"] = trainer.evaluate(EVAL_SAMPLES_PER_TASK)
    console.print(f"end:   pass rate {evals['end']['pass_rate']:.3f}, mean reward {evals['end']['reward_mean']:.3f}")
    trainer.save()
    exported = trainer.export()  # <outputDir>/hf: transformers / vLLM load the policy as it is
    if exported is not None:
        console.print(f"exported Hugging Face model to {exported}")
    for bench, scores in trainer.evaluator.before_after().items():  # spec.rl.eval: e.g. HumanEval pass@1
        console.print(f"{bench}: pass@1 before {scores['before']:.3f}, after {scores['after']:.3f}")
    summary = {"history": trainer.history, "evals": evals, "sandbox_executions": trainer.scorer.executions,
               "benchmarks": trainer.evaluator.before_after()}
    _write_json(metrics_path, summary)
    if _is_main_rank():
        png = plot_reward_curve(trainer.history, evals, out_dir / "reward_curve.png", title=f"{name}: {cfg.algorithm}")
        console.print(f"wrote {metrics_path} and {png}")
    reporter.update(force=True, step=trainer.step, total_steps=total, message="done")
    return summary


def _sandbox(cfg: RLConfig):
    url = cfg.sandbox_url or os.environ.get(contract.ENV_SANDBOX_URL)
    if url:
        return contextlib.nullcontext(url)
    from codekiln.workloads.sandbox.local import local_server

    return local_server()


def run_local(resource: dict) -> int:
    """Entry point of ``codekiln run --local`` for RLRun resources."""
    from rich.console import Console

    console = Console(stderr=True)
    try:
        cfg = RLConfig.model_validate(resource["spec"]["rl"])
    except ValidationError as exc:
        for line in error_lines(exc, ("spec", "rl")):
            console.print(line, markup=False)
        return 2
    except KeyError:
        console.print("spec.rl: missing")
        return 2
    name = resource.get("metadata", {}).get("name", "rlrun")
    from codekiln.workloads.rl.dynamic_sampling import DynamicSamplingError

    try:
        with _sandbox(cfg) as url:
            train(cfg, url, Path(cfg.output_dir), name, console)
    except (DynamicSamplingError, ValueError) as exc:
        console.print(f"[red]RLRun {name} failed:[/red] {exc}")
        return 1
    return 0
