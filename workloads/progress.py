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

Log lines (``kubectl logs``): when stdout is not a terminal (a pod, a pipe), the reporter also
prints one plain line per ``CODEKILN_LOG_EVERY_STEPS`` steps or ``CODEKILN_LOG_EVERY_S`` seconds
(step/total, loss or reward, throughput, ETA) and a final summary; ``--log-format json`` (or
``CODEKILN_LOG_FORMAT=json``) makes every line one JSON object for log pipelines. Only rank 0
(``$RANK`` unset or 0) prints progress; :func:`setup_logging` sets other ranks to warnings and
errors only. ``CODEKILN_LOG_PROGRESS=always|never`` overrides the terminal check.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from codekiln.workloads import contract
from codekiln.workloads.atomic_io import atomic_write_text

PROGRESS_FILE_ENV = "CODEKILN_PROGRESS_FILE"
PROGRESS_BACKEND_ENV = contract.ENV_PROGRESS_BACKEND
PROGRESS_INTERVAL_ENV = "CODEKILN_PROGRESS_INTERVAL_S"
KUBE_API_URL_ENV = "CODEKILN_KUBE_API_URL"  # override of https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT
KUBE_TOKEN_FILE_ENV = "CODEKILN_KUBE_TOKEN_FILE"
LOG_FORMAT_ENV = "CODEKILN_LOG_FORMAT"  # text (default) or json
LOG_PROGRESS_ENV = "CODEKILN_LOG_PROGRESS"  # auto (default: when stdout is not a terminal), always, never
LOG_EVERY_STEPS_ENV = "CODEKILN_LOG_EVERY_STEPS"
LOG_EVERY_S_ENV = "CODEKILN_LOG_EVERY_S"
LOG_FORMATS = ("text", "json")
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
    lines: ProgressLog | None = None
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
        if self.lines is not None:
            self.lines.observe(self.state, fields, force=force)
        if force or now - self._last_write >= self.min_interval_s:
            self._last_write = now
            self._write()

    def finish(self, message: str | None = None) -> None:
        """Print the final summary line (once; also run at exit) and flush the last report."""
        if message:
            self.state["message"] = message
        if self.lines is not None:
            self.lines.summary(self.state)
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


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _fmt_number(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.4g}"


def log_format(env: dict[str, str] | os._Environ = os.environ) -> str:
    """``text`` or ``json`` from ``$CODEKILN_LOG_FORMAT`` (a clear error for anything else)."""
    value = env.get(LOG_FORMAT_ENV, "text") or "text"
    if value not in LOG_FORMATS:
        raise ValueError(f"{LOG_FORMAT_ENV}={value!r}: expected one of {', '.join(LOG_FORMATS)}")
    return value


def is_rank_zero(env: dict[str, str] | os._Environ = os.environ) -> bool:
    """Global rank 0 (or not distributed): the process that logs progress."""
    return env.get("RANK", "0") in ("", "0")


class ProgressLog:
    """Plain progress lines for ``kubectl logs``: one per ``every_steps`` steps or ``every_s`` seconds.

    Args:
        stream: where lines go (stdout).
        fmt: ``text`` or ``json``.
        every_steps: print when the step advanced by this much since the last line (0: by time only).
        every_s: print when this many seconds passed since the last line.
        clock: time source (tests pass a fake one).
    """

    def __init__(self, stream: TextIO, fmt: str = "text", every_steps: int = 0, every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream, self.fmt, self.every_steps, self.every_s, self.clock = stream, fmt, every_steps, every_s, clock
        self._start = clock()
        self._last_time: float | None = None
        self._last_step: int | None = None
        self._done = False
        self.lines = 0

    @classmethod
    def from_env(cls, stream: TextIO | None = None,
                 env: dict[str, str] | os._Environ = os.environ) -> ProgressLog | None:
        """A log for this process, or None (not rank 0, a terminal shows rich bars, or turned off)."""
        stream = stream or sys.stdout
        mode = env.get(LOG_PROGRESS_ENV, "auto")
        if mode == "never" or not is_rank_zero(env):
            return None
        if mode != "always":
            try:
                if stream.isatty():
                    return None
            except (AttributeError, ValueError):
                pass
        return cls(stream, log_format(env), int(env.get(LOG_EVERY_STEPS_ENV, "0") or 0),
                   float(env.get(LOG_EVERY_S_ENV, "30") or 30))

    def observe(self, state: dict[str, Any], fields: dict[str, Any], *, force: bool = False) -> None:
        """Called on every reporter update; prints when a step or time threshold is crossed or on messages."""
        if self._done:
            return
        now, step = self.clock(), state.get("step")
        total = state.get("total_steps") or 0
        every_steps = self.every_steps or max(1, int(total) // 20) if total else self.every_steps
        due = self._last_time is None or now - self._last_time >= self.every_s
        if not due and every_steps and isinstance(step, int):
            due = self._last_step is None or step - self._last_step >= every_steps
        if force and fields.get("message"):
            due = True
        if not due:
            return
        self._last_time, self._last_step = now, step if isinstance(step, int) else self._last_step
        self._emit("progress", state, message=fields.get("message"))

    def summary(self, state: dict[str, Any]) -> None:
        """The final line: steps done, elapsed time, last loss/reward, mean throughput (once)."""
        if self._done:
            return
        self._done = True
        self._emit("summary", state, message=state.get("message"))

    def _emit(self, event: str, state: dict[str, Any], message: str | None = None) -> None:
        elapsed = self.clock() - self._start
        step, total = state.get("step"), state.get("total_steps")
        record: dict[str, Any] = {"event": event, "stage": state.get("stage"), "step": step, "totalSteps": total}
        for key in ("loss", "reward", "throughput", "throughput_unit", "tokens", "eta_seconds", "percent"):
            if state.get(key) is not None:
                record[_camel({key: 0}).popitem()[0]] = state[key]
        record["elapsedSeconds"] = round(elapsed, 1)
        if message:
            record["message"] = message
        if event == "summary":
            record.pop("etaSeconds", None)
        if self.fmt == "json":
            line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "info",
                               **{k: v for k, v in record.items() if v is not None}})
        else:
            line = self._text(event, record)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stdout closed (interpreter exit, a closed pipe): logs are best effort
            self._done = True
            return
        self.lines += 1

    @staticmethod
    def _text(event: str, r: dict[str, Any]) -> str:
        parts = [f"[{r['stage']}]" if r.get("stage") else "[progress]"]
        if event == "summary":
            parts.append("finished:")
        if r.get("step") is not None:
            parts.append(f"step {r['step']}/{r['totalSteps']}" if r.get("totalSteps") else f"step {r['step']}")
            if r.get("percent") is not None and event != "summary":
                parts.append(f"({r['percent']:.1f}%)")
        for key, label in (("loss", "loss"), ("reward", "reward")):
            if isinstance(r.get(key), int | float):
                parts.append(f"{label} {r[key]:.4g}")
        if isinstance(r.get("throughput"), int | float):
            parts.append(f"{_fmt_number(r['throughput'])} {r.get('throughputUnit') or 'items/s'}")
        if isinstance(r.get("tokens"), int | float):
            parts.append(f"tokens {_fmt_number(r['tokens'])}")
        if isinstance(r.get("etaSeconds"), int | float):
            parts.append(f"eta {_fmt_duration(r['etaSeconds'])}")
        parts.append(f"elapsed {_fmt_duration(r['elapsedSeconds'])}")
        if r.get("message"):
            parts.append(f"- {r['message']}")
        return " ".join(parts)


def add_log_arguments(parser: Any) -> None:
    """Add ``--log-format {text,json}`` to a workload's argparse parser (see :func:`setup_logging`)."""
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help=f"text lines or one JSON object per line (default: ${LOG_FORMAT_ENV} or text)")


def setup_logging(log_format_arg: str | None = None) -> str:
    """Configure the root logger for a workload process; returns the format in use.

    Rank 0 logs INFO and up; other ranks WARNING and up (progress is rank 0's job). With
    ``json`` every record is one JSON object per line (``time``, ``level``, ``logger``, ``message``).

    Args:
        log_format_arg: ``--log-format`` when given; it also sets ``$CODEKILN_LOG_FORMAT`` for the reporter.
    """
    if log_format_arg:
        os.environ[LOG_FORMAT_ENV] = log_format_arg
    fmt = log_format()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO if is_rank_zero() else logging.WARNING)
    return fmt


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
               "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if os.environ.get("RANK"):
            out["rank"] = int(os.environ["RANK"]) if os.environ["RANK"].isdigit() else os.environ["RANK"]
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


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
            group_version = env[contract.ENV_RESOURCE_API_VERSION]
            plural, name = env[contract.ENV_RESOURCE_PLURAL], env[contract.ENV_RESOURCE_NAME]
            namespace = env[contract.ENV_RESOURCE_NAMESPACE]
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
        url = (f"{base.rstrip('/')}/apis/{group_version}/namespaces/{namespace}/{plural}/{name}/status"
               "?fieldManager=codekiln-workload")
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
                                         headers={"Content-Type": "application/merge-patch+json",
                                                  "User-Agent": "codekiln-workload"})
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
        lines = ProgressLog.from_env()
        _REPORTER = ProgressReporter(path=Path(path) if path else None, sink=sink,
                                     min_interval_s=0.0 if sink else 2.0, lines=lines)
        import atexit

        if lines is not None:
            atexit.register(lambda: lines.summary(_REPORTER.state) if _REPORTER and lines.lines else None)
        if sink is not None:
            atexit.register(sink.close)
    return _REPORTER
