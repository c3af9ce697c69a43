"""Progress reporting from workloads to their resource's ``status.progress``.

Workloads call ``progress_reporter().update(step=..., total_steps=..., loss=...)``; the
reporter computes percent and ETA and hands the merged state to a sink chosen by env:

- ``CODEKILN_PROGRESS=kubernetes`` (set by the operator on gang pods): the pod patches its
  own resource's ``status.progress`` through the Kubernetes API with its service-account
  token (``PATCH /apis/<group>/<version>/namespaces/<ns>/<plural>/<name>/status``, JSON
  merge patch). The operator creates, per resource, a Role allowing ``get``/``patch`` of
  exactly that one object's ``status`` and binds it to the pod's ServiceAccount. Only
  global rank 0 reports; a background thread sends at most one patch per
  ``CODEKILN_PROGRESS_INTERVAL_S`` (default 10 s), and errors are logged once, never raised.
- ``CODEKILN_PROGRESS_FILE=<path>``: an atomically replaced JSON file (local runs, tests).
- neither: progress stays in memory (``as_dict``), e.g. for the local rich display.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codekiln.workloads.atomic_io import atomic_write_text

PROGRESS_FILE_ENV = "CODEKILN_PROGRESS_FILE"
PROGRESS_BACKEND_ENV = "CODEKILN_PROGRESS"
PROGRESS_INTERVAL_ENV = "CODEKILN_PROGRESS_INTERVAL_S"
KUBE_API_URL_ENV = "CODEKILN_KUBE_API_URL"  # override of https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
KUBE_TOKEN_FILE_ENV = "CODEKILN_KUBE_TOKEN_FILE"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# status.progress fields of the CRD (anything else would be pruned by the API server).
PROGRESS_FIELDS = ("step", "totalSteps", "percent", "stage", "tokens", "throughput", "throughputUnit", "loss",
                   "reward", "etaSeconds", "message", "updatedAt")
log = logging.getLogger("codekiln.progress")
Sink = Callable[[dict[str, Any]], None]


@dataclass
class ProgressReporter:
    """Rate-limited progress sink. ``min_interval_s`` bounds how often it writes."""

    path: Path | None = None
    min_interval_s: float = 2.0
    state: dict[str, Any] = field(default_factory=dict)
    sink: Sink | None = None
    _last_write: float = 0.0
    _start: float = field(default_factory=time.monotonic)

    def update(self, *, force: bool = False, **fields: Any) -> None:
        """Merge ``fields`` (step, total_steps, stage, tokens, throughput, loss, reward, message)."""
        self.state.update({k: v for k, v in fields.items() if v is not None})
        step, total = self.state.get("step"), self.state.get("total_steps")
        if step is not None and total:
            self.state["percent"] = round(100.0 * step / total, 2)
            elapsed = time.monotonic() - self._start
            if step > 0:
                self.state["eta_seconds"] = round(elapsed / step * (total - step), 1)
        now = time.monotonic()
        if force or now - self._last_write >= self.min_interval_s:
            self._last_write = now
            self._write()

    def payload(self) -> dict[str, Any]:
        """The camelCase report, as it appears in ``status.progress``."""
        return {"updatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **_camel(self.state)}

    def _write(self) -> None:
        if self.sink is not None:
            self.sink(self.payload())
        if self.path is None:
            return
        atomic_write_text(self.path, json.dumps(self.payload()))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)["state"]


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    def conv(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(p.title() for p in rest)

    return {conv(k): v for k, v in d.items()}


class KubernetesStatusSink:
    """Patches ``status.progress`` of one resource from a background thread (latest report wins).

    ``__call__`` only stores the report and wakes the thread, so a slow or unreachable API
    server never blocks training; at most one request per ``interval_s`` is sent.
    """

    def __init__(self, url: str, token_file: Path | None, ca_file: Path | None, interval_s: float = 10.0,
                 timeout_s: float = 5.0):
        self.url, self.token_file, self.interval_s, self.timeout_s = url, token_file, interval_s, timeout_s
        self._context = ssl.create_default_context(cafile=str(ca_file)) if url.startswith("https") and ca_file \
            else None
        self._pending: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.sent = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="codekiln-progress", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ = os.environ) -> KubernetesStatusSink | None:
        """Configured from the operator-injected env; None when this process should not report."""
        if env.get("RANK", "0") != "0":
            return None  # one report per gang: global rank 0
        try:
            group_version = env["CODEKILN_RESOURCE_API_VERSION"]
            plural, name = env["CODEKILN_RESOURCE_PLURAL"], env["CODEKILN_RESOURCE_NAME"]
            namespace = env["CODEKILN_RESOURCE_NAMESPACE"]
        except KeyError as exc:
            log.warning("progress: %s is not set; in-cluster progress reporting is off", exc.args[0])
            return None
        base = env.get(KUBE_API_URL_ENV)
        if not base:
            host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                log.warning("progress: not in a cluster (no KUBERNETES_SERVICE_HOST); reporting is off")
                return None
            base = f"https://{host}:{port}"
        token = Path(env.get(KUBE_TOKEN_FILE_ENV, SERVICE_ACCOUNT_DIR / "token"))
        url = f"{base.rstrip('/')}/apis/{group_version}/namespaces/{namespace}/{plural}/{name}/status"
        return cls(url, token, SERVICE_ACCOUNT_DIR / "ca.crt", float(env.get(PROGRESS_INTERVAL_ENV, "10")))

    def __call__(self, report: dict[str, Any]) -> None:
        with self._lock:
            self._pending = {k: v for k, v in report.items() if k in PROGRESS_FIELDS}
        self._wake.set()

    def flush(self) -> None:
        """Send the pending report now."""
        self._send_pending()

    def close(self) -> None:
        """Stop the thread and send what is pending (registered with atexit)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.timeout_s)
        self._send_pending()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            self._send_pending()
            self._stop.wait(self.interval_s)

    def _send_pending(self) -> None:
        with self._lock:
            report, self._pending = self._pending, None
        if report is None:
            return
        body = json.dumps({"status": {"progress": report}}).encode()
        request = urllib.request.Request(self.url, data=body, method="PATCH",
                                         headers={"Content-Type": "application/merge-patch+json"})
        if self.token_file is not None and self.token_file.exists():
            request.add_header("Authorization", f"Bearer {self.token_file.read_text().strip()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._context):
                self.sent += 1
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.errors += 1
            if self.errors == 1:
                log.warning("progress: cannot patch %s: %s (further errors are silent)", self.url, exc)


_REPORTER: ProgressReporter | None = None


def progress_reporter() -> ProgressReporter:
    """The process-wide reporter configured from the environment."""
    global _REPORTER
    if _REPORTER is None:
        path = os.environ.get(PROGRESS_FILE_ENV)
        sink = KubernetesStatusSink.from_env() if os.environ.get(PROGRESS_BACKEND_ENV) == "kubernetes" else None
        _REPORTER = ProgressReporter(path=Path(path) if path else None, sink=sink,
                                     min_interval_s=0.0 if sink else 2.0)
        if sink is not None:
            import atexit

            atexit.register(sink.close)
    return _REPORTER
