"""``codekiln render/get/describe/logs/wait`` — also installed as the kubectl plugin ``kubectl-codekiln``.

* ``render -f FILE``: every manifest the operator would create for the resources in FILE (the same pure
  builders as the operator; no cluster needed), as YAML (or ``-o json``).
* ``get [KIND [NAME]]``: phase, ready, progress, restarts and age of codekiln resources (all four kinds
  by default), like ``kubectl get``; ``-A`` for every namespace, ``-o yaml|json``.
* ``describe KIND NAME``: status, progress, conditions, children (Jobs, pods, Deployments, Services) and
  Events — the ``kubectl describe`` view of a run.
* ``logs KIND NAME``: the logs of the right pod: a gang's rank 0 (``--rank N``), a pipeline shard
  (``--shard N``, ``--stage S``; default the current stage), a sandbox server (``--replica N``).
* ``wait KIND NAME --for=phase=Succeeded | --for=condition=Ready``: exit 0 when reached, 1 on timeout or when
  the run fails first (the KubeRay / ``kubectl wait`` convention).

KIND accepts kind, plural, singular or short names (``ptr``, ``rlr``, ``dp``, ``sbp``). The namespace is
``-n``, else the kubeconfig context's (as kubectl). Exit codes: 0 ok, 1 not found / failed / timed out,
2 bad arguments or invalid files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import yaml

from codekiln.operator.version import API_GROUP, API_VERSION

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
PLUGIN_COMMANDS = ("render", "get", "describe", "logs", "wait")


def _err(message: str) -> None:
    print(message, file=sys.stderr)


# ---------------------------------------------------------------- kinds
def kinds() -> dict[str, Any]:
    from codekiln.operator.resources import RESOURCE_KINDS

    return dict(RESOURCE_KINDS)


def resolve_kind(name: str) -> str:
    """'ptr', 'pretrainruns', 'PretrainRun', 'pretrainrun.codekiln.dev' -> 'PretrainRun' (ValueError otherwise)."""
    wanted = name.split(".")[0].lower()
    for kind, cls in kinds().items():
        if wanted in (kind.lower(), cls.plural, *cls.short_names):
            return kind
    raise ValueError(f"unknown kind {name!r}: one of {', '.join(kinds())} (or plural / short names)")


# ---------------------------------------------------------------- render
def cmd_render(args: argparse.Namespace) -> int:
    """Print every manifest the operator would create for the resources in the files (no cluster needed)."""
    from codekiln.operator.builders import names
    from codekiln.operator.builders.children import render_all
    from codekiln.operator.validation import validate_paths

    results = validate_paths(args.file)
    bad = [r for r in results if not r.ok]
    for result in bad:
        for line in result.errors:
            _err(line if line.startswith(result.source.split("#")[0]) else f"{result.source}: {line}")
    if bad:
        return EXIT_INVALID
    manifests: list[dict[str, Any]] = []
    for result in results:
        doc = result.wire()
        meta = doc.setdefault("metadata", {})
        meta.setdefault("uid", PLACEHOLDER_UID)
        meta["namespace"] = args.namespace or meta.get("namespace") or "default"
        res = type(result.resource).model_validate(doc)
        sandbox_url = None
        ref = getattr(res.spec, "sandbox_pool_ref", None)
        if ref is not None:
            pools = [r for r in results if r.resource.kind_name == "SandboxPool"
                     and r.resource.metadata.name == ref.name]
            port = pools[0].resource.spec.sandbox.port if pools else 8080
            sandbox_url = names.sandbox_url(ref.name, meta["namespace"], port)
        manifests += render_all(res, sandbox_url=sandbox_url)
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}, indent=2))
    else:
        print(yaml.safe_dump_all(manifests, sort_keys=False, width=120), end="")
    return EXIT_OK


# ---------------------------------------------------------------- cluster access
class Cluster:
    """The few calls the plugin makes, through the kubernetes client (kubeconfig or in-cluster)."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None):
        import kubernetes

        try:
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context)
        except (kubernetes.config.ConfigException, OSError):
            kubernetes.config.load_incluster_config()
        api = kubernetes.client.ApiClient()
        api.user_agent = "kubectl-codekiln"
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.batch = kubernetes.client.BatchV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.ApiException = kubernetes.client.ApiException
        self.api = api

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace,
                                                            kinds()[kind].plural, name)
        except self.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None) -> list[dict[str, Any]]:
        plural = kinds()[kind].plural
        if namespace is None:
            found = self.custom.list_cluster_custom_object(API_GROUP, API_VERSION, plural)
        else:
            found = self.custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, plural)
        return list(found.get("items") or [])

    def plain(self, obj: Any) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(obj)


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return args.namespace
    from codekiln.operator.app import default_namespace

    return default_namespace(kubeconfig=args.kubeconfig)


def _age(stamp: str | None) -> str:
    if not stamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return str(stamp)
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def _progress_cell(obj: dict[str, Any]) -> str:
    progress = (obj.get("status") or {}).get("progress") or {}
    if progress.get("step") is not None and progress.get("totalSteps"):
        text = f"{progress['step']}/{progress['totalSteps']}"
        if progress.get("percent") is not None:
            text += f" ({progress['percent']:.0f}%)"
        return text
    return "-"


def _metric_cell(obj: dict[str, Any]) -> str:
    progress = (obj.get("status") or {}).get("progress") or {}
    for key in ("loss", "reward"):
        if isinstance(progress.get(key), int | float):
            return f"{key} {progress[key]:.4g}"
    status = obj.get("status") or {}
    if obj.get("kind") == "SandboxPool":
        return f"{status.get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', '?')} ready"
    if obj.get("kind") == "DataPipeline" and status.get("stagesTotal"):
        return f"stages {status.get('stagesDone', 0)}/{status['stagesTotal']}"
    return "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def _not_found(kind: str, name: str) -> None:
    """kubectl's NotFound message on stderr."""
    _err(f'Error from server (NotFound): {kinds()[kind].plural}.{API_GROUP} "{name}" not found')


def _fetch(args: argparse.Namespace) -> tuple[Cluster, str, str, dict[str, Any] | None]:
    """The cluster, kind, namespace and object named by ``args`` (None, with NotFound said, when it is absent)."""
    cluster = Cluster(args.context, args.kubeconfig)
    kind, namespace = resolve_kind(args.kind), _namespace(args)
    obj = cluster.get(kind, namespace, args.name)
    if obj is None:
        _not_found(kind, args.name)
    return cluster, kind, namespace, obj


# ---------------------------------------------------------------- get
def cmd_get(args: argparse.Namespace) -> int:
    """List codekiln resources (every kind by default) with phase, ready, progress and age."""
    cluster = Cluster(args.context, args.kubeconfig)
    namespace = None if args.all_namespaces else _namespace(args)
    selected = [resolve_kind(args.kind)] if args.kind else list(kinds())
    objects: list[dict[str, Any]] = []
    for kind in selected:
        if args.name:
            found = cluster.get(kind, namespace or "default", args.name)
            if found is None:
                _not_found(kind, args.name)
                return EXIT_FAILED
            objects.append(found)
        else:
            objects += cluster.list(kind, namespace)
    if args.output in ("json", "yaml"):
        doc: Any = objects[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": objects}
        print(json.dumps(doc, indent=2) if args.output == "json" else yaml.safe_dump(doc, sort_keys=False), end="")
        return EXIT_OK
    if not objects:
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        _err(f"No resources found in {where}.")
        return EXIT_OK
    header = (["NAMESPACE"] if namespace is None else []) + ["NAME", "PHASE", "READY", "PROGRESS", "METRIC",
                                                              "RESTARTS", "AGE"]
    rows = [header]
    for obj in objects:
        status = obj.get("status") or {}
        meta = obj["metadata"]
        name = f"{obj['kind'].lower()}/{meta['name']}" if len(selected) > 1 else meta["name"]
        restarts = status.get("restarts")
        rows.append(([meta.get("namespace", "")] if namespace is None else []) + [
            name, status.get("phase") or "Pending", _condition(status, "Ready").get("status", "-"),
            _progress_cell(obj), _metric_cell(obj), "-" if restarts is None else str(restarts),
            _age(meta.get("creationTimestamp"))])
    print(_table(rows))
    return EXIT_OK


# ---------------------------------------------------------------- describe
def _children(cluster: Cluster, kind: str, namespace: str, name: str) -> list[tuple[str, str, str]]:
    """(kind, name, state) of the Jobs, Deployments, Services and pods labelled for this resource."""
    from codekiln.operator.builders import names

    selector = names.label_selector(names.owner_labels(kind, name))
    out: list[tuple[str, str, str]] = []
    for job in cluster.plain(cluster.batch.list_namespaced_job(namespace, label_selector=selector))["items"]:
        s = job.get("status") or {}
        done = next((c["type"] for c in s.get("conditions") or [] if c.get("status") == "True"
                     and c.get("type") in ("Complete", "Failed")), "Suspended" if job["spec"].get("suspend") else
                    "Active")
        out.append(("Job", job["metadata"]["name"], f"{done}: active {s.get('active', 0)}, succeeded "
                    f"{s.get('succeeded', 0)}, failed {s.get('failed', 0)}"))
    for dep in cluster.plain(cluster.apps.list_namespaced_deployment(namespace, label_selector=selector))["items"]:
        s = dep.get("status") or {}
        out.append(("Deployment", dep["metadata"]["name"],
                    f"{s.get('readyReplicas', 0)}/{dep['spec'].get('replicas', 0)} ready"))
    for svc in cluster.plain(cluster.core.list_namespaced_service(namespace, label_selector=selector))["items"]:
        out.append(("Service", svc["metadata"]["name"], svc["spec"].get("clusterIP") or ""))
    pods = cluster.plain(cluster.core.list_namespaced_pod(namespace, label_selector=_pod_selector(kind, name)))
    for pod in pods["items"]:
        out.append(("Pod", pod["metadata"]["name"], (pod.get("status") or {}).get("phase") or "Pending"))
    return out


def _pod_selector(kind: str, name: str) -> str:
    from codekiln.operator.builders import names

    return names.label_selector({names.LABEL_KIND: kind, names.LABEL_NAME: name})


def cmd_describe(args: argparse.Namespace) -> int:
    """Status, progress, conditions, children and Events of one resource."""
    cluster, kind, namespace, obj = _fetch(args)
    if obj is None:
        return EXIT_FAILED
    meta, status = obj["metadata"], obj.get("status") or {}
    lines = [f"Name:         {meta['name']}", f"Namespace:    {meta.get('namespace')}", f"Kind:         {kind}",
             f"Phase:        {status.get('phase') or 'Pending'}"]
    for key, label in (("message", "Message"), ("startTime", "Started"), ("completionTime", "Completed"),
                       ("restarts", "Restarts"), ("disruptions", "Disruptions"), ("currentStage", "Stage"),
                       ("sandboxUrl", "Sandbox URL")):
        if status.get(key) not in (None, ""):
            lines.append(f"{label + ':':<14}{status[key]}")
    if kind == "DataPipeline" and status.get("stagesTotal"):
        lines.append(f"Stages:       {status.get('stagesDone', 0)}/{status['stagesTotal']} done")
    progress = status.get("progress") or {}
    if progress:
        lines.append("Progress:")
        for key in ("stage", "step", "totalSteps", "percent", "loss", "reward", "throughput", "throughputUnit",
                    "tokens", "etaSeconds", "message", "updatedAt"):
            if progress.get(key) is not None:
                lines.append(f"  {key + ':':<16}{progress[key]}")
    lines.append("Conditions:")
    rows = [["  TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]]
    for cond in status.get("conditions") or []:
        rows.append([f"  {cond.get('type')}", cond.get("status", ""), cond.get("reason", ""),
                     _age(cond.get("lastTransitionTime")), (cond.get("message") or "")[:100]])
    lines.append(_table(rows) if len(rows) > 1 else "  <none>")
    lines.append("Children:")
    children = _children(cluster, kind, namespace, args.name)
    lines.append(_table([["  KIND", "NAME", "STATE"]] + [[f"  {k}", n, s] for k, n, s in children])
                 if children else "  <none>")
    events = cluster.plain(cluster.core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={args.name},involvedObject.kind={kind}"))["items"]
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    lines.append("Events:")
    rows = [["  TYPE", "REASON", "AGE", "MESSAGE"]]
    for event in events:
        rows.append([f"  {event.get('type', '')}", event.get("reason", ""),
                     _age(event.get("lastTimestamp") or (event.get("metadata") or {}).get("creationTimestamp")),
                     (event.get("message") or "")[:160]])
    lines.append(_table(rows) if len(rows) > 1 else "  <none>")
    print("\n".join(lines))
    return EXIT_OK


# ---------------------------------------------------------------- logs
def pick_pod(pods: list[dict[str, Any]], kind: str, status: dict[str, Any], *, rank: int = 0,
             shard: int | None = None, stage: str | None = None, replica: int = 0) -> dict[str, Any] | None:
    """The pod whose logs were asked for: the current gang attempt's ``rank``, a stage's ``shard``, a sandbox."""
    from codekiln.operator.builders import names

    def index(pod: dict[str, Any]) -> int:
        meta = pod["metadata"]
        value = (meta.get("labels") or {}).get("batch.kubernetes.io/job-completion-index") \
            or (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index") or "0"
        return int(value) if str(value).isdigit() else 0

    def newest(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        candidates.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return candidates[-1] if candidates else None

    if kind in ("PretrainRun", "RLRun"):
        attempt = str(int(status.get("restarts") or 0) + int(status.get("disruptions") or 0))
        return newest([p for p in pods if (p["metadata"].get("labels") or {}).get(names.LABEL_ATTEMPT) == attempt
                       and index(p) == rank])
    if kind == "DataPipeline":
        stage = stage or status.get("currentStage") or next(
            (s["name"] for s in reversed(status.get("stages") or []) if s.get("phase") != "Pending"), None)
        return newest([p for p in pods if (p["metadata"].get("labels") or {}).get(names.LABEL_STAGE) == stage
                       and index(p) == (shard or 0)])
    ordered = sorted(pods, key=lambda p: p["metadata"]["name"])
    return ordered[replica] if replica < len(ordered) else None


def cmd_logs(args: argparse.Namespace) -> int:
    """Logs of the run's rank 0 (or --rank / --shard / --replica)."""
    cluster, kind, namespace, obj = _fetch(args)
    if obj is None:
        return EXIT_FAILED
    pods = cluster.plain(cluster.core.list_namespaced_pod(namespace, label_selector=_pod_selector(kind, args.name)))
    pod = pick_pod(pods["items"], kind, obj.get("status") or {}, rank=args.rank, shard=args.shard, stage=args.stage,
                   replica=args.replica)
    if pod is None:
        _err(f"{kind} {args.name}: no pod yet for the requested rank/shard/replica (phase "
             f"{(obj.get('status') or {}).get('phase') or 'Pending'}); try `codekiln describe`")
        return EXIT_FAILED
    container = "sandbox" if kind == "SandboxPool" else "workload"
    kwargs: dict[str, Any] = {"container": container}
    if args.tail is not None and args.tail >= 0:
        kwargs["tail_lines"] = args.tail
    name = pod["metadata"]["name"]
    if args.follow:
        stream = cluster.core.read_namespaced_pod_log(name, namespace, follow=True, _preload_content=False, **kwargs)
        for chunk in stream.stream():
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        return EXIT_OK
    text = cluster.core.read_namespaced_pod_log(name, namespace, **kwargs)
    sys.stdout.write(text)
    return EXIT_OK


# ---------------------------------------------------------------- wait
def parse_for(condition: str) -> tuple[str, str, str]:
    """'phase=Succeeded' / 'condition=Ready' / 'condition=Ready=False' -> (what, name, value)."""
    what, _, rest = condition.partition("=")
    if what == "phase" and rest:
        return "phase", rest, rest
    if what == "condition" and rest:
        name, _, value = rest.partition("=")
        return "condition", name, value or "True"
    raise ValueError(f"--for {condition!r}: use phase=<Phase> or condition=<Type>[=True|False]")


def cmd_wait(args: argparse.Namespace) -> int:
    """Wait for a phase or condition; 1 on timeout or when the run ends in another terminal phase first."""
    what, name, value = parse_for(args.for_)
    cluster = Cluster(args.context, args.kubeconfig)
    kind, namespace = resolve_kind(args.kind), _namespace(args)
    deadline = time.monotonic() + args.timeout
    while True:
        obj = cluster.get(kind, namespace, args.name)
        status = (obj or {}).get("status") or {}
        phase = status.get("phase")
        reached = phase == value if what == "phase" else _condition(status, name).get("status") == value
        if obj is not None and reached:
            print(f"{kinds()[kind].plural[:-1]}.{API_GROUP}/{args.name} condition met")
            return EXIT_OK
        if what == "phase" and phase in ("Succeeded", "Failed") and phase != value:
            _err(f"{kind} {args.name} is {phase}, not {value}: {status.get('message') or ''}".rstrip(": "))
            return EXIT_FAILED
        if time.monotonic() >= deadline:
            _err(f"timed out waiting for the condition on {kinds()[kind].plural}/{args.name}"
                 + ("" if obj is not None else " (not found)"))
            return EXIT_FAILED
        time.sleep(min(args.interval, max(0.05, deadline - time.monotonic())))


# ---------------------------------------------------------------- parsers
def add_commands(sub: Any) -> None:
    """Register render/get/describe/logs/wait on an argparse subparsers object (``codekiln`` and the plugin)."""

    def cluster_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
        p.add_argument("--context", help="kubeconfig context")
        p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")

    p = sub.add_parser("render", help="print the manifests the operator would create", description=cmd_render.__doc__)
    p.add_argument("-f", "--file", action="append", required=True, help="YAML file or folder (repeatable)")
    p.add_argument("-n", "--namespace", help="namespace to render into (default: the file's or default)")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.set_defaults(func=_guarded(cmd_render))

    p = sub.add_parser("get", help="list codekiln resources", description=cmd_get.__doc__)
    p.add_argument("kind", nargs="?", help="kind, plural or short name (default: all four kinds)")
    p.add_argument("name", nargs="?", help="resource name")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("-o", "--output", choices=("table", "yaml", "json"), default="table")
    cluster_flags(p)
    p.set_defaults(func=_guarded(cmd_get))

    p = sub.add_parser("describe", help="status, conditions, children and events of a resource",
                       description=cmd_describe.__doc__)
    p.add_argument("kind")
    p.add_argument("name")
    cluster_flags(p)
    p.set_defaults(func=_guarded(cmd_describe))

    p = sub.add_parser("logs", help="logs of a run's rank 0, a shard or a sandbox", description=cmd_logs.__doc__)
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("--rank", type=int, default=0, help="gang pod (node rank) of the current attempt (default 0)")
    p.add_argument("--shard", type=int, default=None, help="DataPipeline shard index (default 0)")
    p.add_argument("--stage", help="DataPipeline stage (default: the current one)")
    p.add_argument("--replica", type=int, default=0, help="SandboxPool server, by name order (default 0)")
    p.add_argument("-f", "--follow", action="store_true", help="stream new lines")
    p.add_argument("--tail", type=int, default=None, help="last N lines only")
    cluster_flags(p)
    p.set_defaults(func=_guarded(cmd_logs))

    p = sub.add_parser("wait", help="wait for a phase or condition", description=cmd_wait.__doc__)
    p.add_argument("kind")
    p.add_argument("name")
    p.add_argument("--for", dest="for_", required=True, help="phase=Succeeded or condition=Ready[=True|False]")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--interval", type=float, default=1.0, help="poll interval in seconds")
    cluster_flags(p)
    p.set_defaults(func=_guarded(cmd_wait))


def _guarded(func: Any) -> Any:
    def call(args: argparse.Namespace) -> int:
        return run(func, args, f"codekiln {args.command}")

    call.__doc__ = func.__doc__
    return call


def run(func: Any, args: argparse.Namespace, prog: str) -> int:
    """Run a parsed plugin command, turning client and argument problems into one line and an exit code."""
    try:
        return func(args)
    except ValueError as exc:
        _err(f"{prog}: {exc}")
        return EXIT_INVALID
    except Exception as exc:  # noqa: BLE001 - API/connection problems: one line, not a traceback
        status = getattr(exc, "status", None)
        if status is not None:
            _err(f"{prog}: the API server answered {status} {getattr(exc, 'reason', '')}".rstrip())
            return EXIT_FAILED
        if isinstance(exc, OSError) or type(exc).__module__.startswith(("urllib3", "kubernetes")):
            _err(f"{prog}: cannot reach the cluster: {exc}")
            return EXIT_FAILED
        raise


def main(argv: list[str] | None = None) -> int:
    """``kubectl codekiln COMMAND`` (kubectl runs the ``kubectl-codekiln`` executable on PATH)."""
    parser = argparse.ArgumentParser(prog="kubectl codekiln", description=__doc__.split("\n\n")[0])
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
