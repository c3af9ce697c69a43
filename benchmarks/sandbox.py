"""Sandbox throughput and latency vs a bare, unisolated ``subprocess`` run of the same program.

Workloads: a Python hello-world, and a HumanEval test run (the trusted harness + a canonical
solution, cycling over the 164 problems). For each client concurrency (1, 8, 32) it measures
executions/s and p50/p99 end-to-end latency of

* ours: ``POST /run_code`` on a real sandbox server (bubblewrap namespaces, rlimits, tmpfs,
  HTTP and JSON included), and
* baseline: ``asyncio.create_subprocess_exec(python3 main.py)`` in a prepared directory with
  the sandbox's environment, no isolation, no HTTP.

Sessions: ``python3 main.py`` as a command in live sessions (``POST /sessions/{id}/run``, one
session per concurrent client) vs a fresh ``/run_code`` run of the same program (baseline there).

The ratio ours/baseline is the price of isolation; CPU ms per execution (the server and
its reaped children vs this process's reaped children) is the load-independent view of it.
Last line: one JSON object (headline: executions/s for the HumanEval run at concurrency 8).

    python benchmarks/sandbox.py [--runs 160] [--levels 1,8,32] [--out FILE]
    python benchmarks/sandbox.py --memory   # the server's RSS growth per request shape (issue 18)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import resource
import secrets
import statistics
import tempfile
import time

import aiohttp
import psutil
from rich.progress import Progress

from codekiln.workloads.sandbox.config import SandboxConfig, SessionLimits
from codekiln.workloads.sandbox.harness import HARNESS, harness_stdin
from codekiln.workloads.sandbox.humaneval import load_problems
from codekiln.workloads.sandbox.local import local_server_process

PYTHON = "/usr/bin/python3"
HELLO = 'print("hello, world")\n'
ROUNDS = 4
# The baseline's files live on a tmpfs too (the sandbox's /workspace is one).
BARE_ROOT = "/dev/shm" if os.path.isdir("/dev/shm") else None


def workloads() -> dict[str, list[dict]]:
    """Per workload, the list of jobs: main.py source, extra files, stdin."""
    jobs = []
    for p in load_problems():
        stdin = harness_stdin("@bench@", p.test, [f"check({p.entry_point})"], p.entry_point, True)
        jobs.append({"code": HARNESS, "files": {"solution.py": p.reference}, "stdin": stdin})
    return {"python_hello": [{"code": HELLO, "files": {}, "stdin": ""}], "humaneval_test": jobs}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bare_cpu_s() -> float:
    """CPU seconds of this process's reaped children (the bare baseline's executions)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def server_cpu_s(pid: int) -> float:
    """CPU seconds of the server and its whole process tree: the warm sandboxes, their reaped jobs."""
    total = _proc_cpu_s(pid)
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(OSError, psutil.Error):
            total += _proc_cpu_s(child.pid)
    return total


async def measure(run_one, jobs: list[dict], runs: int, concurrency: int, offset: int, progress, task,
                  cpu) -> dict:
    """Run ``runs`` executions with at most ``concurrency`` in flight; latencies, wall and CPU time."""
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0

    async def one(i: int) -> None:
        nonlocal failures
        async with sem:
            t0 = time.perf_counter()
            ok = await run_one(jobs[i % len(jobs)])
            latencies.append(time.perf_counter() - t0)
            failures += not ok
            progress.advance(task)

    cpu0 = cpu()
    start = time.perf_counter()
    await asyncio.gather(*(one(offset + i) for i in range(runs)))
    wall = time.perf_counter() - start
    await asyncio.sleep(0.6)  # let the server reap orphaned sandbox inits (their CPU counts)
    return {"latencies": latencies, "wall": wall, "failures": failures, "cpu": cpu() - cpu0}


def summarise(parts: list[dict]) -> dict:
    latencies = [x for p in parts for x in p["latencies"]]
    wall = sum(p["wall"] for p in parts)
    return {"executions_per_s": round(len(latencies) / wall, 2),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1),
            "cpu_ms_per_execution": round(1000 * sum(p["cpu"] for p in parts) / len(latencies), 1),
            "failures": sum(p["failures"] for p in parts), "runs": len(latencies)}


def bare_runner(root: str, jobs: list[dict]):
    """Baseline: each job's files prepared once in a directory; a plain subprocess per execution."""
    dirs = []
    for i, job in enumerate(jobs):
        d = os.path.join(root, f"job{i}")
        os.makedirs(d)
        for name, text in {"main.py": job["code"], **job["files"]}.items():
            with open(os.path.join(d, name), "w") as fh:
                fh.write(text)
        dirs.append(d)
    index = {id(job): d for job, d in zip(jobs, dirs, strict=True)}

    async def run_one(job: dict) -> bool:
        # The same environment the sandbox builds, so only isolation differs.
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": index[id(job)], "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-u", "main.py", cwd=index[id(job)], stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        out, _ = await proc.communicate(job["stdin"].encode())
        return proc.returncode == 0 and (b'"passed": true' in out or b"hello" in out)

    return run_one


def session_runner(url: str, http: aiohttp.ClientSession, session_ids: list[str]):
    """Commands in live sessions (``python3 main.py`` in the session's workspace), one session per worker."""
    free = list(session_ids)

    async def run_one(job: dict) -> bool:
        sid = free.pop()
        try:
            body = {"command": "python3 -u main.py", "stdin": job["stdin"]}
            async with http.post(f"{url}/sessions/{sid}/run", json=body) as resp:
                data = await resp.json()
        finally:
            free.append(sid)
        return data.get("status") == "Finished" and data.get("exit_code") == 0 and "hello" in data.get("stdout", "")

    return run_one


async def open_sessions(url: str, http: aiohttp.ClientSession, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        async with http.post(url + "/sessions", json={"files": {"main.py": HELLO}}) as resp:
            ids.append((await resp.json())["session_id"])
    return ids


def sandbox_runner(url: str, session: aiohttp.ClientSession):
    async def run_one(job: dict) -> bool:
        body = {"code": job["code"], "language": "python", "stdin": job["stdin"],
                "files": {k: base64.b64encode(v.encode()).decode() for k, v in job["files"].items()}}
        async with session.post(url + "/run_code", json=body) as resp:
            data = await resp.json()
        out = (data.get("run_result") or {}).get("stdout") or ""
        return data.get("status") == "Success" and ('"passed": true' in out or "hello" in out)

    return run_one


async def bench(url: str, server_pid: int, runs: int, levels: list[int]) -> list[dict]:
    results = []
    jobs_by_name = workloads()
    total = runs * len(levels) * len(jobs_by_name) * 2 + runs * 2 * len([lv for lv in levels if lv <= 8])
    with tempfile.TemporaryDirectory(dir=BARE_ROOT) as root, Progress() as progress:
        task = progress.add_task("sandbox benchmark", total=total)
        connector = aiohttp.TCPConnector(limit=max(levels))
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
            for name, jobs in jobs_by_name.items():
                bare = bare_runner(os.path.join(root, name), jobs)
                ours = sandbox_runner(url, session)
                await ours(jobs[0])  # warm-up (imports, page cache)
                await bare(jobs[0])
                for level in levels:
                    # Alternate rounds so background load on a shared machine hits both sides alike.
                    chunk = max(1, runs // ROUNDS)
                    base_parts, mine_parts = [], []
                    for r in range(0, runs, chunk):
                        n = min(chunk, runs - r)
                        base_parts.append(await measure(bare, jobs, n, level, r, progress, task, bare_cpu_s))
                        mine_parts.append(await measure(ours, jobs, n, level, r, progress, task,
                                                        lambda: server_cpu_s(server_pid)))
                    base, mine = summarise(base_parts), summarise(mine_parts)
                    results.append({"workload": name, "concurrency": level, "ours": mine, "baseline": base,
                                    "ratio_throughput": round(mine["executions_per_s"] / base["executions_per_s"], 3)})
            # Sessions: commands/s in live sessions vs fresh /run_code runs of the same program.
            jobs = jobs_by_name["python_hello"]
            fresh = sandbox_runner(url, session)
            for level in [lv for lv in levels if lv <= 8]:
                ids = await open_sessions(url, session, level)
                live = session_runner(url, session, ids)
                await live(jobs[0])
                chunk = max(1, runs // ROUNDS)
                fresh_parts, live_parts = [], []
                for r in range(0, runs, chunk):
                    n = min(chunk, runs - r)
                    fresh_parts.append(await measure(fresh, jobs, n, level, r, progress, task,
                                                     lambda: server_cpu_s(server_pid)))
                    live_parts.append(await measure(live, jobs, n, level, r, progress, task,
                                                    lambda: server_cpu_s(server_pid)))
                for sid in ids:
                    async with session.delete(f"{url}/sessions/{sid}"):
                        pass
                a, b = summarise(live_parts), summarise(fresh_parts)
                results.append({"workload": "session_command_python_hello", "concurrency": level, "ours": a,
                                "baseline": b, "baseline_name": "fresh /run_code run of the same program",
                                "ratio_throughput": round(a["executions_per_s"] / b["executions_per_s"], 3)})
    return results


def _post_json(http, path: str, body: bytes) -> int:
    return http.post(path, content=body, headers={"Content-Type": "application/json"}).status_code


def memory_bench() -> dict:
    """Peak RSS growth of a default-config server over idle, per request shape (polled every 5 ms)."""
    import concurrent.futures
    import threading

    import httpx

    cfg = SandboxConfig(work_dir=os.path.join(tempfile.gettempdir(), f"ck-mem-{secrets.token_hex(4)}"),
                        max_concurrency=4)
    big = b'{"code":"print(1)","language":"python","junk":"' + b"a" * (60 << 20) + b'"}'
    results: dict = {}
    with local_server_process(cfg) as (url, proc), httpx.Client(base_url=url, timeout=300) as http:
        server = psutil.Process(proc.pid)
        http.post("/run_code", json={"code": "print(1)", "language": "python"})
        time.sleep(1)
        base = server.memory_info().rss
        peak, stop = [base], threading.Event()

        def poll() -> None:
            while not stop.is_set():
                with contextlib.suppress(psutil.Error):
                    peak[0] = max(peak[0], server.memory_info().rss)
                time.sleep(0.005)

        def upload(_):
            with httpx.Client(base_url=url, timeout=300) as h:
                return _post_json(h, "/run_code", big)

        files = {f"d/f{i}.bin": base64.b64encode(bytes([i]) * (1 << 20)).decode() for i in range(31)}
        copy = "import shutil,os\nfor f in os.listdir('d'):\n    shutil.copy('d/'+f, 'out_'+f)\n"
        shapes = {
            "32MiB_files_in_and_fetched": lambda: http.post("/run_code", json={
                "code": copy, "language": "python", "files": files,
                "fetch_files": [f"out_f{i}.bin" for i in range(31)]}).status_code,
            "60MiB_nested_arrays": lambda: _post_json(
                http, "/run_code", b'{"code":"print(1)","language":"python","junk":[' + b"[]," * (20 << 20) + b"[]]}"),
            "60MiB_ignored_string": lambda: _post_json(http, "/run_code", big),
            "batch_1024_cases_x_1MiB_output": lambda: http.post("/run_batch", json={
                "code": "import sys\nsys.stdout.write('y' * 1048000)\n", "language": "python",
                "cases": [{}] * 1024}).status_code,
            "8_concurrent_60MiB_uploads":
                lambda: sorted(concurrent.futures.ThreadPoolExecutor(8).map(upload, range(8))),
        }
        watcher = threading.Thread(target=poll)
        watcher.start()
        for name, fn in shapes.items():
            status = fn()
            time.sleep(0.2)
            results[name] = {"status": status, "peak_growth_mib": round((peak[0] - base) / 2**20, 1)}
            print(name, results[name], flush=True)
        stop.set()
        watcher.join()
    return {"name": "sandbox_server_memory", "unit": "MiB above idle (cumulative peak)",
            "idle_rss_mib": round(base / 2**20, 1), "results": results,
            "params": {"max_request_mb": cfg.max_request_mb, "max_inflight_mb": cfg.max_inflight_mb}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=160, help="Executions per (workload, concurrency, system).")
    parser.add_argument("--levels", default="1,8,32", help="Client concurrency levels.")
    parser.add_argument("--out", help="Also write the JSON here.")
    parser.add_argument("--memory", action="store_true", help="Measure the server's RSS per request shape instead.")
    args = parser.parse_args()
    if args.memory:
        print(json.dumps(memory_bench()))
        return
    levels = [int(x) for x in args.levels.split(",")]
    config = SandboxConfig(max_concurrency=max(levels), max_queue=4 * max(levels),
                           sessions=SessionLimits(max_sessions=max(8, max(levels))),
                           work_dir=os.path.join(tempfile.gettempdir(), f"ck-bench-{secrets.token_hex(4)}"))
    with local_server_process(config) as (url, proc):
        results = asyncio.run(bench(url, proc.pid, args.runs, levels))
    for r in results:
        print(f"{r['workload']:>15} c={r['concurrency']:<3} ours {r['ours']['executions_per_s']:>7}/s "
              f"p50 {r['ours']['p50_ms']:>7}ms p99 {r['ours']['p99_ms']:>7}ms | bare "
              f"{r['baseline']['executions_per_s']:>7}/s p50 {r['baseline']['p50_ms']:>7}ms "
              f"p99 {r['baseline']['p99_ms']:>7}ms | ratio {r['ratio_throughput']} | CPU ms/exec ours "
              f"{r['ours']['cpu_ms_per_execution']} bare {r['baseline']['cpu_ms_per_execution']}")
    head = next(r for r in results if r["workload"] == "humaneval_test" and r["concurrency"] == 8) \
        if 8 in levels else results[-1]
    out = {
        "name": "sandbox",
        "metric": f"{head['workload']}_executions_per_s_at_concurrency_{head['concurrency']}",
        "unit": "executions/s",
        "ours": head["ours"]["executions_per_s"],
        "baseline": head["baseline"]["executions_per_s"],
        "baseline_name": "bare asyncio subprocess (python3 main.py, no isolation, no HTTP)",
        "note": "compare ratios (both sides alternate rounds in the same process), not absolute numbers; "
                f"1-minute load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        "ratio": head["ratio_throughput"],
        "params": {"runs": args.runs, "levels": levels, "server_max_concurrency": config.max_concurrency,
                   "cpus": os.cpu_count(), "machine": platform.machine(), "python": PYTHON,
                   "date": time.strftime("%Y-%m-%d")},
        "results": results,
    }
    text = json.dumps(out)
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(json.dumps(out, indent=1))
        os.replace(tmp, args.out)
    print(text)


if __name__ == "__main__":
    main()
