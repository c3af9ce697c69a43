"""Every adversarial program of REFERENCES.md §Sandbox, each with its expected verdict.

After each case the server must be healthy and a normal program must still run correctly
(the autouse fixture), and no sandbox process may be left behind.
"""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import urlparse

import psutil
import pytest

from .helpers import OUTPUT_CAP, SECRET, UID_BASE, assert_healthy, b64, is_warm_sandbox, run

SLOT_UIDS = range(UID_BASE, UID_BASE + 64)


def sandbox_processes() -> list[psutil.Process]:
    """Processes (zombies included) of runs, as a slot uid of the test server (root: one uid per slot).

    The warm sandboxes themselves (bwrap and the zygote it runs) stay between runs; anything
    else under a slot uid belongs to a run and must be gone once it was answered.
    """
    return [p for p in slot_processes() if not is_warm_sandbox(p)]


def slot_processes() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["uids"]):
        uids = proc.info.get("uids")
        if uids and uids.real in SLOT_UIDS:
            out.append(proc)
    return out



def wait_no_sandbox_processes(timeout_s: float = 20.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout_s
    left = sandbox_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = sandbox_processes()
    return left


@pytest.fixture(autouse=True)
def healthy_after(http):
    yield
    assert not wait_no_sandbox_processes(), "sandbox processes survived the run"
    assert_healthy(http)


def verdict(body: dict) -> str:
    return body["run_result"]["verdict"]


# ---------------------------------------------------------------- processes
def test_python_fork_bomb_times_out(http):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    body = run(http, code)
    assert verdict(body) == "TimeLimitExceeded"
    assert body["run_result"]["status"] == "TimeLimitExceeded"
    assert body["status"] == "Failed"
    assert body["run_result"]["execution_time"] < 3.0 + 2.0


def test_python_fork_limit_is_enforced(http):
    code = ("import os, time\nn = 0\nfor _ in range(10000):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
            "    n += 1\nprint(n)\n")
    body = run(http, code)
    assert verdict(body) == "OK", body
    assert 0 < int(body["run_result"]["stdout"]) < 32  # max_processes = 32 in the test config


def test_bash_fork_bomb(http):
    body = run(http, ":(){ :|:& };:\nwait\nsleep 10\n", "bash")
    assert verdict(body) == "TimeLimitExceeded"


def test_hundred_thousand_threads(http):
    code = ("import threading, time\nts = []\nfor _ in range(100000):\n"
            "    t = threading.Thread(target=time.sleep, args=(30,), daemon=True)\n    t.start()\n    ts.append(t)\n")
    body = run(http, code)
    assert verdict(body) == "RuntimeError"
    assert "can't start new thread" in body["run_result"]["stderr"]


def test_busy_loop(http):
    body = run(http, "while True:\n    pass\n", run_timeout=1.5)
    assert verdict(body) == "TimeLimitExceeded"
    assert 1.4 < body["run_result"]["execution_time"] < 3.5


def test_sleep_forever_needs_the_wall_clock(http):
    body = run(http, "import time\ntime.sleep(10**6)\n", run_timeout=1.0)
    assert verdict(body) == "TimeLimitExceeded"
    assert body["run_result"]["return_code"] is None


# ---------------------------------------------------------------- memory and disk
def test_64gb_allocation(http):
    body = run(http, "x = bytearray(64 << 30)\nprint('allocated')\n")
    assert verdict(body) == "MemoryLimitExceeded"
    assert "MemoryError" in body["run_result"]["stderr"]


def test_huge_untouched_mmap(http):
    body = run(http, "import mmap\nm = mmap.mmap(-1, 64 << 30)\nprint('mapped')\n")
    assert verdict(body) == "MemoryLimitExceeded"
    assert "mapped" not in body["run_result"]["stdout"]


def test_memory_limit_covers_every_process_of_a_run(http):
    """Six children each under the per-process limit (256 MiB) but 1.2 GiB together."""
    code = ("import os\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
            "        x = bytearray(200 << 20)\n        for j in range(0, len(x), 4096):\n            x[j] = 1\n"
            "        os._exit(0)\n    kids.append(pid)\nprint([os.waitpid(k, 0)[1] for k in kids])\n")
    body = run(http, code, run_timeout=20)
    if http.get("/readyz").json()["cgroups"]:
        # One memory cgroup per execution: the run as a whole is over its limit.
        assert verdict(body) == "MemoryLimitExceeded", body
        assert "9" in body["run_result"]["stdout"]  # children were SIGKILLed by the OOM killer
    else:
        # Without cgroups (non-root pods) only the per-process bound holds: each child fits.
        assert verdict(body) == "OK" and body["run_result"]["stdout"] == "[0, 0, 0, 0, 0, 0]\n", body


def test_c_malloc_64gb_returns_null(http):
    code = ("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\nint main(){\n"
            "  char *p = malloc(64UL << 30);\n  if (!p) { puts(\"null\"); return 0; }\n"
            "  memset(p, 1, 64UL << 30);\n  puts(\"filled\");\n}\n")
    body = run(http, code, "c")
    assert verdict(body) == "OK"
    assert body["run_result"]["stdout"] == "null\n"


@pytest.mark.parametrize("target", ["/workspace", "/tmp", "/dev/shm"])
def test_disk_fill_stops_at_the_private_tmpfs(http, work_dir, target):
    code = (f"import errno, os\nblock = b'x' * (1 << 20)\ni = 0\ntry:\n    while True:\n"
            f"        with open('{target}/fill%d' % i, 'wb') as fh:\n            for _ in range(4):\n"
            "                fh.write(block)\n        i += 1\nexcept OSError as exc:\n"
            "    print(errno.errorcode[exc.errno], i)\n")
    before = _du(work_dir)
    body = run(http, code)
    assert verdict(body) == "OK", body
    name, files = body["run_result"]["stdout"].split()
    assert name == "ENOSPC" and int(files) <= 4  # a 16 MiB tmpfs
    assert _du(work_dir) == before


def test_file_size_limit(http):
    code = ("import errno\nblock = b'x' * (1 << 20)\ntry:\n    with open('big', 'wb') as fh:\n"
            "        for _ in range(100):\n            fh.write(block)\n            fh.flush()\n"
            "except OSError as exc:\n    print(errno.errorcode[exc.errno])\n")
    body = run(http, code, memory_limit_MB=512)
    assert body["run_result"]["stdout"] in ("EFBIG\n", "ENOSPC\n")


def test_no_files_left_for_the_next_run(http):
    writer = ("import os\nfor d in ('/workspace', '/tmp', '/dev/shm'):\n"
              "    open(os.path.join(d, 'leftover'), 'w').write('x')\nprint('written')\n")
    assert run(http, writer)["run_result"]["stdout"] == "written\n"
    reader = ("import os\nprint([d for d in ('/workspace', '/tmp', '/dev/shm')"
              " if os.path.exists(os.path.join(d, 'leftover'))])\n")
    assert run(http, reader)["run_result"]["stdout"] == "[]\n"


def test_rm_rf_root(http, tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("alive")
    body = run(http, "rm -rf --no-preserve-root / 2>/dev/null\ntest -x /usr/bin/python3 && echo survived\n", "bash",
               run_timeout=20)
    assert verdict(body) == "OK"
    assert body["run_result"]["stdout"] == "survived\n"
    assert canary.read_text() == "alive"


# ---------------------------------------------------------------- secrets and the host
def test_environment_and_secrets_are_invisible(http):
    code = """
import os
out = [repr(dict(os.environ))]
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            out.append(open(f'/proc/{pid}/environ', 'rb').read().decode(errors='replace'))
        except OSError as exc:
            out.append(str(exc))
for path in ('/var/run/secrets/kubernetes.io/serviceaccount/token', '/run/secrets', '/root', '/work', '/home',
             '/etc/shadow', '/proc/1/root/etc/shadow'):
    print(path, os.path.exists(path))
print('\\n'.join(out))
"""
    body = run(http, code)
    assert verdict(body) == "OK", body
    stdout = body["run_result"]["stdout"]
    assert SECRET not in stdout and SECRET not in body["run_result"]["stderr"]
    for line in stdout.splitlines()[:7]:
        assert line.endswith(" False"), line
    assert "'PATH': '/usr/local/bin:/usr/bin:/bin'" in stdout
    assert "CODEKILN" not in stdout


def test_only_the_sandbox_processes_are_visible(http):
    body = run(http, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n")
    pids = eval(body["run_result"]["stdout"])  # noqa: S307 - a list of ints printed by the program
    assert pids and max(pids) < 10  # a fresh pid namespace: bwrap's init, the program, nothing of the host


def test_network_is_unreachable(http, server):
    port = urlparse(server).port
    code = f"""
import socket, urllib.request
def attempt(name, fn):
    try:
        fn()
        print(name, 'REACHED')
    except Exception:
        print(name, 'blocked')
attempt('server', lambda: socket.create_connection(('127.0.0.1', {port}), timeout=1))
attempt('metadata', lambda: socket.create_connection(('169.254.169.254', 80), timeout=1))
attempt('dns', lambda: socket.getaddrinfo('kubernetes.default.svc.cluster.local', 443))
attempt('url', lambda: urllib.request.urlopen('http://example.com', timeout=1))
attempt('public-ip', lambda: socket.create_connection(('1.1.1.1', 53), timeout=1))
"""
    body = run(http, code)
    assert verdict(body) == "OK", body
    lines = body["run_result"]["stdout"].splitlines()
    assert len(lines) == 5 and all(line.endswith(" blocked") for line in lines), lines


def test_a_job_leaves_nothing_in_the_network_for_the_next(http):
    """Runs of one slot may share its loopback-only network namespace, never a port or a listener.

    Each run binds the same fixed port without SO_REUSEADDR (a TIME_WAIT socket of an earlier run
    would refuse it), closes a connection from the server side (which would leave one), and leaves
    a listener open when it ends; the next run of the slot must find the port free and the
    listener gone. Two rounds over every slot (the server hands slots out in turn).
    """
    code = """
import errno, os, socket
try:
    socket.create_connection(('127.0.0.1', 47011), timeout=1)
    print('listener of an earlier run: REACHED')
except OSError as exc:
    print('listener of an earlier run:', 'gone' if exc.errno == errno.ECONNREFUSED else exc)
srv = socket.socket()
srv.bind(('127.0.0.1', 47010))
srv.listen()
cli = socket.create_connection(('127.0.0.1', 47010))
conn, _ = srv.accept()
conn.close()  # the server side closes first: its end would sit in TIME_WAIT
cli.recv(1)
cli.close()
srv.close()
keep = socket.socket()
keep.bind(('127.0.0.1', 47011))
keep.listen()
print('bound and closed')
try:
    open('/proc/sys/net/ipv4/tcp_max_tw_buckets', 'w').write('100000')
    print('sysctl: WRITTEN')
except OSError:
    print('sysctl: refused')
"""
    for _ in range(2 * 4):
        body = run(http, code)
        assert verdict(body) == "OK", body
        assert body["run_result"]["stdout"].splitlines() == [
            "listener of an earlier run: gone", "bound and closed", "sysctl: refused"], body


def test_killing_the_parent_and_other_processes(http):
    victim: dict = {}

    def run_victim():
        victim["body"] = run(http, "import time\ntime.sleep(1.5)\nprint('victim ok')\n")

    thread = threading.Thread(target=run_victim)
    thread.start()
    time.sleep(0.3)
    attacker = run(http, "kill -9 -1; kill -9 1; kill -9 $PPID; pkill -9 python3; echo still here\n", "bash")
    thread.join()
    assert victim["body"]["run_result"]["stdout"] == "victim ok\n"
    assert verdict(victim["body"]) == "OK"
    assert verdict(attacker) in ("OK", "RuntimeError")


def test_python_kills_its_parent(http):
    body = run(http, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('done')\n")
    assert body["run_result"]["verdict"] in ("OK", "RuntimeError")


def test_kernel_attack_surface_syscalls_are_denied(http):
    assert http.get("/readyz").json()["seccomp"] is True
    code = """
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for name, nr in [("ptrace", 101), ("bpf", 321), ("keyctl", 250), ("perf_event_open", 298), ("userfaultfd", 323),
                 ("io_uring_setup", 425), ("unshare", 272), ("mount", 165), ("setns", 308), ("getpid", 39)]:
    r = libc.syscall(nr, 0, 0, 0, 0, 0)
    print(name, errno.errorcode.get(ctypes.get_errno(), "?") if r < 0 else "allowed")
"""
    body = run(http, code)
    assert verdict(body) == "OK", body
    got = dict(line.split() for line in body["run_result"]["stdout"].splitlines())
    assert got.pop("getpid") == "allowed"
    assert got.pop("io_uring_setup") == "ENOSYS"
    assert set(got.values()) == {"EPERM"}, got


def test_user_namespaces_cannot_be_nested(http):
    body = run(http, "unshare --user --map-root-user id 2>&1; echo rc=$?\n", "bash")
    assert "rc=0" not in body["run_result"]["stdout"]


def test_double_fork_daemon_does_not_survive(http):
    marker = f"ck-daemon-{os.getpid()}-{time.monotonic_ns()}"
    body = run(http, f"(setsid bash -c 'exec -a {marker} sleep 300' &)\n"
                     f"(nohup bash -c 'exec -a {marker} sleep 300' >/dev/null 2>&1 &)\necho started\n", "bash")
    assert verdict(body) == "OK"
    assert body["run_result"]["stdout"] == "started\n"
    time.sleep(0.2)
    survivors = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info.get("cmdline") or [])]
    assert survivors == []


def test_daemon_killed_on_timeout(http):
    marker = f"ck-daemon-tle-{time.monotonic_ns()}"
    body = run(http, f"(setsid bash -c 'exec -a {marker} sleep 300' &)\nsleep 100\n", "bash", run_timeout=1)
    assert verdict(body) == "TimeLimitExceeded"
    survivors = [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info.get("cmdline") or [])]
    assert survivors == []


# ---------------------------------------------------------------- output and source
def test_infinite_output_is_capped(http):
    body = run(http, "while True:\n    print('x' * 1000)\n")
    rr = body["run_result"]
    assert rr["verdict"] == "OutputLimitExceeded" and rr["status"] == "Error"
    assert rr["stdout_truncated"] is True
    assert len(rr["stdout"]) == OUTPUT_CAP
    assert rr["execution_time"] < 3.0


def test_infinite_binary_output_on_stderr(http):
    body = run(http, "import os\nwhile True:\n    os.write(2, os.urandom(65536))\n")
    rr = body["run_result"]
    assert rr["verdict"] == "OutputLimitExceeded"
    assert rr["stderr_truncated"] is True and rr["stdout_truncated"] is False


def test_huge_source_is_refused(http):
    resp = http.post("/run_code", json={"code": "#" * (5 << 20), "language": "python"})
    assert resp.status_code == 400
    assert "code:" in resp.json()["message"]


def test_include_dev_urandom(http):
    body = run(http, '#include "/dev/urandom"\nint main(){return 0;}\n', "c", compile_timeout=3)
    assert body["status"] == "Failed"
    assert body["run_result"] is None
    assert body["compile_result"]["verdict"] in ("TimeLimitExceeded", "CompileError", "MemoryLimitExceeded")


def test_unread_huge_stdin_does_not_hang(http):
    body = run(http, "print('ignored stdin')\n", stdin="x" * (8 << 20))
    assert verdict(body) == "OK"


# ---------------------------------------------------------------- paths and symlinks
def test_fetched_symlinks_are_not_followed(http):
    host_file = os.path.abspath(__file__)  # exists on the host, not in the sandbox
    code = ("import os\nos.symlink('/etc/passwd', 'out.txt')\nos.symlink('/proc/self/environ', 'env.txt')\n"
            f"os.symlink({host_file!r}, 'host.txt')\nos.symlink({os.path.dirname(host_file)!r}, 'hostdir')\n"
            "open('real.txt', 'w').write('ok')\n")
    fetch = ["out.txt", "env.txt", "host.txt", f"hostdir/{os.path.basename(host_file)}", "real.txt", "missing.txt"]
    body = run(http, code, fetch_files=fetch)
    assert verdict(body) == "OK", body
    # Links come back as nothing; files are read inside the sandbox, so the host is never reachable.
    assert body["files"] == {"real.txt": b64("ok")}


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/shadow", "/workspace/../root/x", ""])
def test_escaping_paths_are_refused(http, path):
    resp = http.post("/run_code", json={"code": "print(1)", "language": "python", "files": {path: b64("x")}})
    assert resp.status_code == 400
    assert "files" in resp.json()["message"]
    resp = http.post("/run_code", json={"code": "print(1)", "language": "python", "fetch_files": [path]})
    assert resp.status_code == 400
    assert "fetch_files" in resp.json()["message"]


def _du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_size
    return total
