"""The sandbox HTTP server (aiohttp): SandboxFusion's ``/run_code``, ``/run_batch``, sessions, health, metrics.

A request is read first — at most ``max_uploads`` bodies at once, each within
``read_timeout_s`` and ``max_request_mb``, all together within ``max_inflight_mb`` — and checked
for shape before it is parsed (``bodies.py``); only then is it admitted: at most
``max_concurrency + max_queue`` at once, beyond that 429. Slow uploads hold no execution
capacity. Errors are typed: 400 (malformed), 408 (too slow), 413 (too large), 422 (a value out of
range), each naming the field as ``{"status": "SandboxError", "message": "<field>: …", "field"}``;
500 only for a bug in the server, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from codekiln.workloads.sandbox.bodies import BodyError, BodyLimits, check_shape, read_body
from codekiln.workloads.sandbox.config import EXIT_SANDBOX_UNAVAILABLE, SandboxConfig
from codekiln.workloads.sandbox.executor import Executor, RequestError
from codekiln.workloads.sandbox.isolation import SandboxUnavailable
from codekiln.workloads.sandbox.languages import canonical
from codekiln.workloads.sandbox.memory import protect_server
from codekiln.workloads.sandbox.metrics import SandboxMetrics
from codekiln.workloads.sandbox.models import RunBatchRequest, RunCodeRequest
from codekiln.workloads.sandbox.sessions import FileWrite, SessionCreate, SessionManager, SessionRun, reap_forever

log = logging.getLogger("codekiln.sandbox")
EXECUTOR = web.AppKey("executor", Executor)
METRICS = web.AppKey("metrics", SandboxMetrics)
STATE = web.AppKey("state", dict)
CONFIG = web.AppKey("config", SandboxConfig)
BODY_LIMITS = web.AppKey("body_limits", BodyLimits)
SESSIONS = web.AppKey("sessions", SessionManager)


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body = {"status": "SandboxError", "message": message, "error": message}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


class Overloaded(Exception):
    """Too many bodies or bytes in flight: 429."""


def _validation_error(exc: ValidationError) -> RequestError:
    errors = exc.errors()
    first = ".".join(map(str, errors[0]["loc"])) if errors and errors[0]["loc"] else "body"
    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
    status = 400 if errors and errors[0]["type"] in ("json_invalid", "json_type") else 422
    return RequestError(problems, status, first)


async def read_request(request: web.Request, model):
    """Read (bounded), shape-check and parse a request body into ``model``.

    Raises BodyError (400/408/413), RequestError (400/422) or Overloaded (429).
    """
    app = request.app
    state, cfg = app[STATE], app[CONFIG]
    if state["uploads"] >= cfg.max_uploads:
        raise Overloaded(f"{state['uploads']} request bodies are being received (max_uploads {cfg.max_uploads})")
    budget = cfg.max_inflight_mb << 20
    held = 0

    def charge(n: int) -> None:
        nonlocal held
        if state["inflight_bytes"] + n > budget:
            raise Overloaded(f"request bodies in flight exceed max_inflight_mb={cfg.max_inflight_mb}")
        state["inflight_bytes"] += n
        held += n

    state["uploads"] += 1
    try:
        body = await read_body(request, app[BODY_LIMITS], charge)
    except BaseException:
        state["inflight_bytes"] -= held
        raise
    finally:
        state["uploads"] -= 1
    request["held_bytes"] = held
    try:
        check_shape(body, app[BODY_LIMITS])
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    except BaseException:
        state["inflight_bytes"] -= held
        request["held_bytes"] = 0
        raise


def release(request: web.Request) -> None:
    """Give back the bytes a request's body held against ``max_inflight_mb``."""
    request.app[STATE]["inflight_bytes"] -= request.get("held_bytes", 0)
    request["held_bytes"] = 0


def typed_error(metrics: SandboxMetrics, exc: BaseException) -> web.Response | None:
    """The 4xx answer of a typed request error, or None when ``exc`` is not one."""
    if isinstance(exc, BodyError):
        metrics.rejections.labels("body").inc()
        return _error(exc.status, str(exc), exc.field)
    if isinstance(exc, RequestError):
        metrics.rejections.labels("bad_request").inc()
        return _error(exc.status, str(exc), exc.field)
    if isinstance(exc, Overloaded):
        metrics.rejections.labels("overload").inc()
        return _error(429, f"overloaded: {exc}")
    if isinstance(exc, web.HTTPException):
        return _error(exc.status, exc.reason)
    return None


def _make_handler(kind: str):
    async def handler(request: web.Request) -> web.Response:
        app = request.app
        state, metrics, executor = app[STATE], app[METRICS], app[EXECUTOR]
        cfg: SandboxConfig = executor.config
        if not state["ready"]:
            metrics.rejections.labels("not_ready").inc()
            return _error(503, f"sandbox not ready: {state.get('error', 'starting')}")
        start = time.monotonic()
        language = "unknown"
        admitted = False
        try:
            model = RunCodeRequest if kind == "run_code" else RunBatchRequest
            req = await read_request(request, model)  # admission only after the body arrived
            if state["admitted"] >= cfg.max_concurrency + cfg.max_queue:
                raise Overloaded(f"{state['admitted']} requests admitted "
                                 f"(max_concurrency {cfg.max_concurrency} + max_queue {cfg.max_queue})")
            admitted = True
            state["admitted"] += 1
            metrics.in_flight.set(state["admitted"])
            metrics.queue_depth.set(max(0, state["admitted"] - cfg.max_concurrency))
            language = canonical(req.language) or "unknown"
            if kind == "run_code":
                resp = await executor.run_code(req)
                _count(metrics, language, resp.compile_result, resp.run_result)
            else:
                resp = await executor.run_batch(req)
                _count(metrics, language, resp.compile_result, *(r.run_result for r in resp.results))
            del req
            return web.json_response(text=resp.model_dump_json())
        except Exception as exc:  # typed errors → 4xx; anything else is a bug: 500 without a traceback
            answer = typed_error(metrics, exc)
            if answer is not None:
                return answer
            log.exception("sandbox request failed")
            metrics.runs.labels(language, "run", "SandboxError").inc()
            return _error(500, f"internal error ({type(exc).__name__}); see the server log")
        finally:
            release(request)
            if admitted:
                state["admitted"] -= 1
            metrics.in_flight.set(state["admitted"])
            metrics.queue_depth.set(max(0, state["admitted"] - cfg.max_concurrency))
            metrics.latency.labels(kind, language).observe(time.monotonic() - start)

    return handler


def _count(metrics: SandboxMetrics, language: str, compile_result, *runs) -> None:
    if compile_result is not None:
        metrics.runs.labels(language, "compile", compile_result.verdict).inc()
        if compile_result.execution_time is not None:
            metrics.exec_seconds.labels(language, "compile").observe(compile_result.execution_time)
    for run in runs:
        if run is None:
            continue
        metrics.runs.labels(language, "run", run.verdict).inc()
        if run.execution_time is not None:
            metrics.exec_seconds.labels(language, "run").observe(run.execution_time)


def _session_route(fn, model=None):
    """A session endpoint: 503 until ready, typed 4xx errors, 500 without a traceback."""
    async def handler(request: web.Request) -> web.Response:
        app = request.app
        if not app[STATE]["ready"]:
            return _error(503, f"sandbox not ready: {app[STATE].get('error', 'starting')}")
        try:
            body = await read_request(request, model) if model is not None else None
            status, payload = await fn(app[SESSIONS], request, body)
            return web.json_response(payload, status=status)
        except Exception as exc:
            answer = typed_error(app[METRICS], exc)
            if answer is not None:
                return answer
            log.exception("session request failed")
            return _error(500, f"internal error ({type(exc).__name__}); see the server log")
        finally:
            release(request)

    return handler


async def _s_create(mgr: SessionManager, request, body):
    session, setup = await mgr.create(body)
    out = {"session_id": session.session_id, "workdir": "/workspace", "expires_at": session.expires_at,
           "limits": session.info()["limits"], "setup": setup}
    pod_ip = os.environ.get("POD_IP")
    if pod_ip:  # in a pool: later calls of this session must reach this pod (see sessions_client.py)
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        out["endpoint"] = f"http://{host}:{request.app[STATE].get('port') or request.app[CONFIG].port}"
    return 201, out


async def _s_run(mgr, request, body):
    return 200, await mgr.run(request.match_info["sid"], body)


async def _s_read(mgr, request, body):
    return 200, await mgr.read_file(request.match_info["sid"], request.query.get("path"))


async def _s_write(mgr, request, body):
    return 200, await mgr.write_file(request.match_info["sid"], body)


async def _s_list(mgr, request, body):
    return 200, await mgr.list_files(request.match_info["sid"], request.query.get("path"))


async def _s_diff(mgr, request, body):
    return 200, await mgr.diff(request.match_info["sid"])


async def _s_close(mgr, request, body):
    mgr.get(request.match_info["sid"])
    await mgr.close(request.match_info["sid"])
    return 200, {"closed": True}


async def _s_index(mgr, request, body):
    return 200, {"sessions": [s.info() for s in mgr.sessions.values()]}


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.get("ready"):
        executor = request.app[EXECUTOR]
        return web.json_response({"status": "ready", "languages": sorted(executor.toolchains),
                                  "seccomp": executor.isolator.seccomp is not None,
                                  "cgroups": bool(executor.isolator.cgroups and executor.isolator.cgroups.enabled),
                                  "uid_per_slot": executor.uid_per_slot, "warm_sandboxes": executor.warm_count,
                                  "oom_score_adj": state.get("oom_score_adj"),
                                  "memory": dataclasses.asdict(executor.plan)})
    return web.json_response({"status": "not ready", "message": state.get("error", "starting")}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    app = request.app
    app[METRICS].busy.set(app[EXECUTOR].busy)
    body = generate_latest(app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _languages(request: web.Request) -> web.Response:
    tcs = request.app[EXECUTOR].toolchains
    return web.json_response({"languages": {
        name: {"aliases": list(tc.language.aliases), "compiled": tc.compile_argv is not None, "version": tc.version,
               "source": tc.language.source} for name, tc in sorted(tcs.items())}})


async def _reap_forever(executor: Executor, interval_s: float = 0.5) -> None:
    """Reap orphaned sandbox inits that finish after their run was already answered."""
    while True:
        await asyncio.sleep(interval_s)
        executor.isolator.reaper.reap()


async def _startup_check(app: web.Application) -> None:
    error = await app[EXECUTOR].self_check()
    if error:
        app[STATE]["error"] = f"sandbox self-check failed: {error}"
        log.error(app[STATE]["error"])
    else:
        await app[EXECUTOR].warm()
        app[STATE]["ready"] = True


def build_app(config: SandboxConfig) -> web.Application:
    """The aiohttp application (routes, executor, metrics); readiness follows a startup self-check."""
    app = web.Application(client_max_size=config.max_request_mb << 20)
    app[CONFIG] = config
    app[EXECUTOR] = Executor(config)
    app[METRICS] = SandboxMetrics()
    app[STATE] = {"admitted": 0, "ready": False, "uploads": 0, "inflight_bytes": 0,
                  "oom_score_adj": protect_server()}
    app[BODY_LIMITS] = BodyLimits(max_bytes=config.max_request_mb << 20, max_items=config.limits.max_json_items,
                                  max_depth=config.limits.max_json_depth, read_timeout_s=config.read_timeout_s)
    app.router.add_post("/run_code", _make_handler("run_code"))
    app.router.add_post("/run_batch", _make_handler("run_batch"))
    app[SESSIONS] = SessionManager(config, app[EXECUTOR].isolator, app[EXECUTOR].session_uid,
                                   app[EXECUTOR].plan.max_session_memory_mb, app[METRICS])
    app.router.add_post("/sessions", _session_route(_s_create, SessionCreate))
    app.router.add_get("/sessions", _session_route(_s_index))
    app.router.add_post("/sessions/{sid}/run", _session_route(_s_run, SessionRun))
    app.router.add_get("/sessions/{sid}/files", _session_route(_s_read))
    app.router.add_put("/sessions/{sid}/files", _session_route(_s_write, FileWrite))
    app.router.add_get("/sessions/{sid}/list", _session_route(_s_list))
    app.router.add_get("/sessions/{sid}/diff", _session_route(_s_diff))
    app.router.add_delete("/sessions/{sid}", _session_route(_s_close))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/languages", _languages)
    app.router.add_get("/v1/languages", _languages)

    async def on_startup(app: web.Application) -> None:
        app[STATE]["check"] = asyncio.ensure_future(_startup_check(app))
        app[STATE]["reaper"] = asyncio.ensure_future(_reap_forever(app[EXECUTOR]))
        app[STATE]["session_reaper"] = asyncio.ensure_future(reap_forever(app[SESSIONS]))

    async def on_cleanup(app: web.Application) -> None:
        app[STATE]["reaper"].cancel()
        app[STATE]["session_reaper"].cancel()
        await app[SESSIONS].close_all()
        await app[EXECUTOR].aclose()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve_async(config: SandboxConfig, ready: asyncio.Event | None = None,
                      exit_on_failed_check: bool = False) -> None:
    """Serve until cancelled or SIGTERM/SIGINT. Prints one JSON line with the bound address.

    With ``exit_on_failed_check`` a failed self-check raises :class:`SandboxUnavailable` instead
    of serving 503s (pods: the restart and its termination message make the cause visible).
    """
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # the real port when config.port == 0
    app[STATE]["port"] = port
    await app[STATE]["check"]
    state = app[STATE]
    print(json.dumps({"event": "listening", "host": config.host, "port": port, "ready": state["ready"],
                      "error": state.get("error"), "languages": sorted(app[EXECUTOR].toolchains)}), flush=True)
    if exit_on_failed_check and not state["ready"]:
        await runner.cleanup()
        raise SandboxUnavailable(state.get("error") or "sandbox self-check failed")
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(config: SandboxConfig, exit_on_failed_check: bool = False) -> None:
    """Run the server in the foreground until SIGTERM or Ctrl-C (``codekiln sandbox serve`` calls this)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_async(config, exit_on_failed_check=exit_on_failed_check))


def serve_until_stopped(config: SandboxConfig, exit_on_failed_check: bool = False,
                        termination_log: str | None = None) -> int:
    """``serve`` for command lines: exit code 0, or 3 with a one-line error when isolation is unavailable.

    ``termination_log`` (a pod's ``/dev/termination-log``) also receives the error, so Kubernetes
    shows it in the container's last state and the operator in the SandboxPool's Ready condition.
    """
    try:
        serve(config, exit_on_failed_check)
    except SandboxUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        if termination_log:
            with contextlib.suppress(OSError), open(termination_log, "w") as fh:
                fh.write(str(exc)[:4000])
        return EXIT_SANDBOX_UNAVAILABLE
    return 0
