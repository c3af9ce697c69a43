"""E2E: the operator is killed and restarted mid-run: no duplicate children, nothing lost."""

from __future__ import annotations

import time
import uuid

import pytest
from operator_cluster import Cluster, OperatorThread
from operator_factories import document

SELECTOR = "codekiln.dev/name=run"


@pytest.fixture
def fresh(k8s):
    """A namespace on this module's emulator; each test runs (and kills) its own operators."""
    return Cluster(k8s, f"r-{uuid.uuid4().hex[:8]}")


def test_operator_killed_and_restarted_mid_run(fresh, k8s):
    cluster = fresh
    first = OperatorThread(k8s.url).start()
    cluster.create(document("PretrainRun", "run", nodes=2, maxRestarts=3))
    cluster.create(document("DataPipeline", "cur"))
    cluster.wait(lambda: cluster.get("Job", "run-r0") and cluster.get("Job", "cur-read"), what="children")
    pods = cluster.spawn_pods("run-r0")
    cluster.run_all("run-r0")
    cluster.wait_phase("PretrainRun", "run", "Running")
    first.stop()

    # while the operator is down: a rank fails, a stage finishes
    cluster.set_pod(pods[0], "Failed", exit_code=1)
    cluster.spawn_pods("cur-read", [0, 1, 2, 3])
    cluster.finish_all("cur-read")

    second = OperatorThread(k8s.url).start()
    try:
        cluster.wait(lambda: cluster.get("Job", "run-r1"), what="gang restarted by the new operator")
        cluster.wait(lambda: cluster.get("Job", "cur-dedup"), what="next stage started by the new operator")
        time.sleep(1.0)  # several resync/requeue passes
        assert cluster.names("Job", SELECTOR) == ["run-r1"]
        assert cluster.names("Job", "codekiln.dev/name=cur") == ["cur-dedup", "cur-read"]
        assert cluster.names("Service", SELECTOR) == ["run-gang"]
        assert cluster.status("PretrainRun", "run")["restarts"] == 1
    finally:
        second.stop()


def test_restart_count_persisted_before_the_new_gang(fresh, k8s):
    """A crash between 'restart counted' and 'old Job deleted' resumes at the counted attempt."""
    cluster = fresh
    cluster.create(document("PretrainRun", "run", nodes=1))
    runner = OperatorThread(k8s.url).start()
    cluster.wait(lambda: cluster.get("Job", "run-r0"), what="gang Job")
    runner.stop()
    # simulate the crash window: restarts=1 written, attempt 0 Job still there
    cluster.patch("PretrainRun", "run", {"status": {"restarts": 1, "phase": "Restarting"}}, sub="status")
    runner = OperatorThread(k8s.url).start()
    try:
        cluster.wait(lambda: cluster.names("Job", SELECTOR) == ["run-r1"], what="stale attempt replaced")
        assert cluster.status("PretrainRun", "run")["restarts"] == 1
    finally:
        runner.stop()
