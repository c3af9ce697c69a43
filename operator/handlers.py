"""The one routing module: every kopf decorator of the operator, each handler a few lines.

Handlers never decide anything: they map an event to the resource it concerns and call
:meth:`Reconciler.trigger`. The reconcile layer (``codekiln.operator.reconcile``) does the work.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from codekiln.operator.builders import names
from codekiln.operator.reconcile.cache import ObjectCache
from codekiln.operator.reconcile.core import Reconciler
from codekiln.operator.reconcile.kube import KubeClient, KubeConfig
from codekiln.operator.status import is_true
from codekiln.operator.version import API_GROUP, API_VERSION
from codekiln.workloads import contract

PLURALS = contract.KIND_PLURALS
# Safety-net pass per resource; the reconciler normally requeues itself precisely (deadline, TTL, polling).
RESYNC_INTERVAL_S = float(os.environ.get("CODEKILN_RESYNC_INTERVAL_S", "120"))
MANAGED = {names.LABEL_MANAGED_BY: names.MANAGED_BY}


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf settings: no kopf annotations/finalizers on our objects, server-side child filtering."""
    prefix = API_GROUP
    settings.persistence.finalizer = f"{prefix}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix)
    settings.posting.level = 30  # only warnings of kopf itself become Events; ours are posted by status.py
    settings.posting.reporting_component = "codekiln-operator"
    selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"
    for resource in (("batch", "jobs"), ("apps", "deployments")):
        settings.watching.label_selectors[resource] = selector
    # Only gang pods matter (failure detection before the Job reacts); shard and sandbox pods are
    # summarised by their Job / Deployment status.
    settings.watching.label_selectors["", "pods"] = f"{selector},{names.LABEL_COMPONENT}=worker"
    settings.watching.server_timeout = float(os.environ.get("CODEKILN_WATCH_TIMEOUT_S", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.queueing.idle_timeout = float(os.environ.get("CODEKILN_WORKER_IDLE_S", "5"))


def _reconciler(memo: Any) -> Reconciler:
    return memo.reconciler


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    configure(settings)
    config = getattr(memo, "kube_config", None) or KubeConfig.from_kubernetes()
    memo.kube_config = config
    memo.reconciler = Reconciler(KubeClient(config), cache=ObjectCache())
    memo.reconciler.start_resync(RESYNC_INTERVAL_S)  # not kopf timers: those add a finalizer to every resource


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    await _reconciler(memo).close()


@kopf.on.login()
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    config: KubeConfig = getattr(memo, "kube_config", None) or KubeConfig.from_kubernetes()
    memo.kube_config = config
    return kopf.ConnectionInfo(server=config.server, token=config.bearer(), ca_path=config.ca_path,
                               insecure=config.insecure, certificate_path=config.cert_path,
                               private_key_path=config.key_path)


@kopf.on.probe(id="reconcilePasses")
def probe(memo: Any, **_: Any) -> int:
    return _reconciler(memo).passes


# ---------------------------------------------------------------- the four kinds
@kopf.on.event(API_GROUP, API_VERSION, "datapipelines")
@kopf.on.event(API_GROUP, API_VERSION, "pretrainruns")
@kopf.on.event(API_GROUP, API_VERSION, "rlruns")
@kopf.on.event(API_GROUP, API_VERSION, "sandboxpools")
async def resource_event(type: str | None, body: kopf.Body, event: Any, memo: Any, **_: Any) -> None:
    """Any change of a codekiln resource (created, spec or status changed, deleted)."""
    reconciler, key = _reconciler(memo), (body["kind"], body.metadata.namespace, body.metadata.name)
    if type == "DELETED":
        reconciler.forget(key)
    else:
        if reconciler.cache is not None:
            reconciler.cache.put_resource(event["object"])  # the pass reads this instead of a GET
        reconciler.trigger(*key, resource_version=body.metadata.get("resourceVersion"))
    if body["kind"] == "SandboxPool":
        ready = None if type == "DELETED" else is_true(body.get("status"), "Ready")
        for dependent in reconciler.pool_changed(key[1], key[2], ready):
            reconciler.trigger(*dependent)
    else:
        for dependent in reconciler.dependents_of(*key):  # runs whose spec.after names this one
            reconciler.trigger(*dependent)


# ---------------------------------------------------------------- children
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def child_event(type: str | None, body: kopf.Body, event: Any, memo: Any, **_: Any) -> None:
    """A Job, pod or Deployment of ours changed: reconcile its owner (pod failures are seen at once)."""
    kind, name = body.metadata.labels.get(names.LABEL_KIND), body.metadata.labels.get(names.LABEL_NAME)
    if kind in PLURALS and name:
        reconciler = _reconciler(memo)
        if reconciler.cache is not None:
            reconciler.cache.put_child(event["object"], deleted=type == "DELETED")
        reconciler.trigger(kind, body.metadata.namespace, name)
