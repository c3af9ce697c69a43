"""RL metrics: one Prometheus server per pod (regression: the second process of a pod died with
EADDRINUSE), the step time split, throughput and response-length percentiles."""

from __future__ import annotations

import multiprocessing as mp
import socket
import urllib.request

import pytest

from codekiln.workloads.rl.metrics import StepClock, export, length_percentiles, start_metrics_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(port: int, local_rank: int, ready, done, out) -> None:
    gauges = start_metrics_server(port, local_rank)
    export(gauges, {"clip_fraction": 0.25, "step": 3, "skipped": True})
    out[local_rank] = gauges is not None
    ready.wait()  # both ranks have started before either checks the endpoint
    done.wait(30)


def test_two_ranks_of_a_pod_share_one_metrics_port_without_dying():
    port = _free_port()
    ctx = mp.get_context("fork")
    with ctx.Manager() as manager:
        out, ready, done = manager.dict(), manager.Barrier(3), manager.Event()
        procs = [ctx.Process(target=_rank, args=(port, r, ready, done, out)) for r in (0, 1)]
        for p in procs:
            p.start()
        ready.wait(60)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        done.set()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0, 0]  # before the fix, the second died with EADDRINUSE
        assert dict(out) == {0: True, 1: False}  # local rank 0 serves, rank 1 does not bind
    assert "codekiln_rl_clip_ratio 0.25" in body and "codekiln_rl_step 3.0" in body
    assert "codekiln_rl_generate_seconds" in body and "codekiln_rl_rollout_tokens_per_second" in body


def test_a_port_taken_by_another_process_costs_the_metrics_not_the_run():
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        assert start_metrics_server(taken.getsockname()[1], local_rank=0) is None


def test_step_clock_splits_time_and_counts():
    clock = StepClock()
    with clock.time("generate"):
        pass
    with pytest.raises(RuntimeError), clock.time("train"):
        raise RuntimeError("timed even when it fails")
    clock.count("generated_tokens", 12)
    clock.count("generated_tokens", 3)
    out = clock.take()
    assert set(out) == {"time_generate_s", "time_score_s", "time_train_s", "time_sync_s", "generated_tokens"}
    assert out["generated_tokens"] == 15 and out["time_train_s"] > 0 and out["time_score_s"] == 0
    assert clock.take()["time_train_s"] == 0  # reset after take


def test_length_percentiles():
    p = length_percentiles(list(range(1, 101)))
    assert p["response_len_p50"] == pytest.approx(50.5) and p["response_len_max"] == 100
    assert p["response_len_p90"] == pytest.approx(90.1) and p["response_len_p99"] == pytest.approx(99.01)
    assert length_percentiles([])["response_len_p50"] == 0.0
