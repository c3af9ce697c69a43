"""Soak: 2,000 executions leave no processes, file descriptors, mounts or temp files behind."""

from __future__ import annotations

import glob
import os
import time

import httpx
import psutil

from codekiln.workloads.sandbox.local import local_server_process

from .helpers import UID_BASE, is_warm_sandbox, make_config

RUNS = 2000
BATCH = 100
PROGRAMS = [
    ("python", "import sys\nprint(sys.stdin.read()[::-1])\n"),
    ("bash", "read x; echo \"$x$x\"\n"),
    ("python", "import os\nif os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(60)\nprint('ok')\n"),
    ("bash", "yes | head -c 200000 >/dev/null; echo done; exit 3\n"),
]


def snapshot(server: psutil.Process, work_dir: str) -> dict:
    slot_uids = range(UID_BASE, UID_BASE + 64)
    children = server.children(recursive=True)
    return {
        "children": sorted(p.pid for p in children if not is_warm_sandbox(p)),
        "warm_sandbox_processes": sum(1 for p in children if is_warm_sandbox(p)),
        "fds": server.num_fds(),
        "threads": server.num_threads(),
        "slot_processes": [p.pid for p in psutil.process_iter(["uids"])
                           if p.info["uids"] and p.info["uids"].real in slot_uids and not is_warm_sandbox(p)],
        "work_dir": sorted(os.listdir(work_dir)),
        "tmp_owned_by_slots": sorted(e.name for e in os.scandir("/tmp")
                                     if e.stat(follow_symlinks=False).st_uid in slot_uids),
        "host_mounts": _mount_count(),
        "processes_in_slot_cgroups": _cgroup_processes(server.pid),
    }


def _cgroup_processes(server_pid: int) -> int:
    """Processes left in the server's slot cgroups (when it could create them)."""
    paths = {}
    with open(f"/proc/{server_pid}/cgroup") as fh:
        for line in fh:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            paths[controllers] = path
    parents = [f"/sys/fs/cgroup/memory{paths.get('memory', '')}", f"/sys/fs/cgroup{paths.get('', '')}"]
    total = 0
    for parent in parents:
        for procs in glob.glob(f"{parent}/codekiln-sandbox-{server_pid}/slot-*/cgroup.procs"):
            with open(procs) as fh:
                total += len(fh.read().split())
    return total


def _mount_count() -> int:
    with open("/proc/self/mountinfo") as fh:
        return sum(1 for _ in fh)


def settle(server: psutil.Process, work_dir: str, baseline: dict, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    snap = snapshot(server, work_dir)
    while snap != baseline and time.monotonic() < deadline:
        time.sleep(0.2)
        snap = snapshot(server, work_dir)
    return snap


def test_soak_leaves_nothing_behind(tmp_path):
    work_dir = str(tmp_path / "work")
    config = make_config(work_dir, max_concurrency=4)
    with local_server_process(config) as (url, proc), httpx.Client(base_url=url, timeout=300) as http:
        server = psutil.Process(proc.pid)
        warm = http.post("/run_batch", json={"code": "print(1)", "language": "python", "cases": [{}] * 8})
        assert warm.json()["passed"] == 8
        # The warm-up's last sandbox may still be exiting (and being reaped): wait until it is gone.
        deadline = time.monotonic() + 15
        baseline = snapshot(server, work_dir)
        while (baseline["children"] or baseline["slot_processes"]) and time.monotonic() < deadline:
            time.sleep(0.2)
            baseline = snapshot(server, work_dir)
        assert baseline["children"] == [] and baseline["slot_processes"] == [], baseline
        baseline = settle(server, work_dir, snapshot(server, work_dir), timeout_s=2)
        rss_before = server.memory_info().rss

        done = passed = 0
        start = time.monotonic()
        while done < RUNS:
            language, code = PROGRAMS[(done // BATCH) % len(PROGRAMS)]
            cases = [{"stdin": f"line {done + i}\n"} for i in range(BATCH)]
            body = http.post("/run_batch", json={"code": code, "language": language, "cases": cases}).json()
            assert body["total"] == BATCH, body
            verdicts = {r["run_result"]["verdict"] for r in body["results"]}
            assert verdicts <= {"OK", "RuntimeError"}, verdicts
            done += BATCH
            passed += body["passed"]
        elapsed = time.monotonic() - start
        assert passed == RUNS - RUNS // len(PROGRAMS)  # the `exit 3` program fails by design
        after = settle(server, work_dir, baseline)
        assert after == baseline, {k: (baseline[k], after[k]) for k in after if after[k] != baseline[k]}
        # Bounded server memory: 2,000 runs leave the server's RSS within 64 MiB of where it started.
        rss_after = server.memory_info().rss
        assert rss_after < rss_before + (64 << 20), (rss_before >> 20, rss_after >> 20)
        metrics = http.get("/metrics").text
        assert f'codekiln_sandbox_runs_total{{language="python",phase="run",verdict="OK"}} {RUNS // 2 + 8}.0' \
            in metrics
        print(f"soak: {RUNS} runs in {elapsed:.1f}s ({RUNS / elapsed:.0f}/s); before/after {baseline}")
