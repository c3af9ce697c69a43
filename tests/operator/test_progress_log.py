"""Plain progress lines for ``kubectl logs``: cadence, content, JSON form, rank gating, the summary."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from codekiln.workloads.progress import ProgressLog, ProgressReporter, setup_logging


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_n_steps_with_loss_throughput_eta_and_a_summary():
    out, clock = io.StringIO(), FakeClock()
    log = ProgressLog(out, "text", every_steps=10, every_s=3600, clock=clock)
    reporter = ProgressReporter(min_interval_s=3600, lines=log)
    for step in range(1, 101):
        clock.now += 1.0
        reporter.update(step=step, total_steps=100, stage="pretrain", loss=3.0 - step / 100,
                        throughput=15300.0, throughput_unit="tokens/s")
    reporter.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11, lines  # step 1, 11, 21, ... 91 and the summary
    assert lines[1].startswith("[pretrain] step 11/100 (11.0%) loss 2.89 15.3k tokens/s eta ")
    assert lines[-1].startswith("[pretrain] finished: step 100/100 loss 2 15.3k tokens/s")
    assert "eta" not in lines[-1]
    reporter.finish()  # idempotent
    assert len(out.getvalue().splitlines()) == 11


def test_time_based_cadence_and_messages_always_print():
    out, clock = io.StringIO(), FakeClock()
    reporter = ProgressReporter(min_interval_s=3600, lines=ProgressLog(out, "text", every_steps=0, every_s=30,
                                                                        clock=clock))
    for step in range(1, 61):  # 60 steps, 1 s each: a line at t=1, 31 (and none in between)
        clock.now += 1.0
        reporter.update(step=step, reward=0.25, stage="rl")
    reporter.update(force=True, message="checkpoint saved")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "reward 0.25" in lines[0] and lines[2].endswith("- checkpoint saved")


def test_json_lines_are_objects_with_the_fields():
    out, clock = io.StringIO(), FakeClock()
    reporter = ProgressReporter(min_interval_s=3600, lines=ProgressLog(out, "json", every_steps=5, clock=clock))
    for step in range(1, 11):
        clock.now += 2.0
        reporter.update(step=step, total_steps=10, loss=1.5, throughput=100.0, throughput_unit="samples/s")
    reporter.finish("done")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["progress", "progress", "summary"]
    assert records[1]["step"] == 6 and records[1]["totalSteps"] == 10 and records[1]["loss"] == 1.5
    assert records[1]["throughputUnit"] == "samples/s" and "etaSeconds" in records[1]
    assert records[-1]["message"] == "done" and records[-1]["elapsedSeconds"] == 20.0


def test_from_env_rank_terminal_and_override():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert ProgressLog.from_env(io.StringIO(), {"RANK": "1"}) is None  # other ranks: no progress lines
    assert ProgressLog.from_env(Tty(), {}) is None  # a terminal gets rich's bars instead
    assert ProgressLog.from_env(Tty(), {"CODEKILN_LOG_PROGRESS": "always"}) is not None
    assert ProgressLog.from_env(io.StringIO(), {"CODEKILN_LOG_PROGRESS": "never"}) is None
    log = ProgressLog.from_env(io.StringIO(), {"RANK": "0", "CODEKILN_LOG_FORMAT": "json"})
    assert log is not None and log.fmt == "json"
    with pytest.raises(ValueError, match="CODEKILN_LOG_FORMAT='xml'"):
        ProgressLog.from_env(io.StringIO(), {"CODEKILN_LOG_FORMAT": "xml"})


def test_setup_logging_ranks_and_json(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.delenv("CODEKILN_LOG_FORMAT", raising=False)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        assert setup_logging("json") == "json" and os.environ["CODEKILN_LOG_FORMAT"] == "json"
        logging.getLogger("codekiln.test").info("hidden on rank 2")
        logging.getLogger("codekiln.test").warning("disk %s", "full")
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1
        record = json.loads(err[0])
        assert record["level"] == "warning" and record["message"] == "disk full" and record["rank"] == 2
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])


def test_a_piped_process_prints_lines_and_summary_at_exit():
    """A real process whose stdout is a pipe (as in a pod): lines appear while it runs, the summary at exit."""
    code = ("from codekiln.workloads.progress import progress_reporter\n"
            "r = progress_reporter()\n"
            "for s in range(1, 41): r.update(step=s, total_steps=40, loss=1.0, stage='train')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEKILN_") and k != "RANK"}
    env["CODEKILN_LOG_EVERY_STEPS"] = "10"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert [line.split()[2] for line in lines[:-1]] == ["1/40", "11/40", "21/40", "31/40"]
    assert lines[-1].startswith("[train] finished: step 40/40")
