"""The Reconciler without kopf: coalescing, requeue, pool fan-out, invalid specs — against the emulator."""

from __future__ import annotations

import uuid

from operator_cluster import Cluster
from operator_factories import document

from codekiln.operator import metrics
from codekiln.operator.reconcile.core import Reconciler
from codekiln.operator.reconcile.kube import KubeClient, KubeConfig


async def test_a_burst_of_triggers_folds_into_few_passes(k8s):
    cluster = Cluster(k8s, f"c-{uuid.uuid4().hex[:8]}")
    cluster.create(document("SandboxPool", "pool", replicas=1))
    reconciler = Reconciler(KubeClient(KubeConfig(server=k8s.url)), debounce_s=0.05)
    try:
        for _ in range(100):
            reconciler.trigger("SandboxPool", cluster.ns, "pool")
        await reconciler.idle()
        assert reconciler.passes == 1
        assert cluster.get("Deployment", "pool") is not None
        assert cluster.status("SandboxPool", "pool")["phase"] == "Pending"
        # the pool is not Ready: the pass asked to be requeued (polling until ready)
        assert ("SandboxPool", cluster.ns, "pool") in reconciler._timers
        # a trigger echoing our own status write is ignored
        version = cluster.get("SandboxPool", "pool")["metadata"]["resourceVersion"]
        reconciler.trigger("SandboxPool", cluster.ns, "pool", resource_version=version)
        await reconciler.idle()
        assert reconciler.passes == 1
    finally:
        await reconciler.close()


async def test_pool_readiness_change_fans_out_to_waiting_rlruns(k8s):
    cluster = Cluster(k8s, f"c-{uuid.uuid4().hex[:8]}")
    cluster.create(document("RLRun", "rl", sandboxPoolRef={"name": "pool"}))
    reconciler = Reconciler(KubeClient(KubeConfig(server=k8s.url)), debounce_s=0)
    try:
        reconciler.trigger("RLRun", cluster.ns, "rl")
        await reconciler.idle()
        assert cluster.condition("RLRun", "rl", "SandboxPoolReady")["reason"] == "SandboxPoolNotFound"
        key = ("RLRun", cluster.ns, "rl")
        assert reconciler.pool_changed(cluster.ns, "pool", False) == [key]
        assert reconciler.pool_changed(cluster.ns, "pool", False) == []  # no change, no fan-out
        assert reconciler.pool_changed(cluster.ns, "pool", True) == [key]
        assert reconciler.pool_changed(cluster.ns, "other", True) == []
    finally:
        await reconciler.close()


async def test_invalid_resource_counts_as_invalid_and_gone_resource_is_forgotten(k8s):
    cluster = Cluster(k8s, f"c-{uuid.uuid4().hex[:8]}")
    cluster.create(document("PretrainRun", "bad", env=[{"name": "WORLD_SIZE", "value": "8"}]))
    reconciler = Reconciler(KubeClient(KubeConfig(server=k8s.url)), debounce_s=0)
    before = metrics.sample("codekiln_operator_reconciles_total", kind="PretrainRun", result="invalid")
    try:
        reconciler.trigger("PretrainRun", cluster.ns, "bad")
        await reconciler.idle()
        assert metrics.sample("codekiln_operator_reconciles_total", kind="PretrainRun", result="invalid") == \
            before + 1
        assert "spec.env[0].name" in cluster.condition("PretrainRun", "bad", "Failed")["message"]
        cluster.delete("PretrainRun", "bad")
        reconciler.trigger("PretrainRun", cluster.ns, "bad")
        await reconciler.idle()
        assert ("PretrainRun", cluster.ns, "bad") not in reconciler.memory
    finally:
        await reconciler.close()
