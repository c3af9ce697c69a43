# ruff: noqa: UP031, SIM105, SIM115, E501 - runs as a stdlib-only script inside the sandbox
"""The warm sandbox: a trusted stdlib-only Python process inside a long-lived bubblewrap sandbox.

The server starts one per execution slot (and one per session) with ``bwrap --unshare-all
--uid 0 --cap-add ALL`` — root with capabilities *inside its own user namespace only* — and
sends it jobs over a ``SOCK_SEQPACKET`` control socket (a JSON header plus file descriptors).
Per job, prepared before the request arrives (two spares per one-shot slot):

* **keeper**: for a one-shot slot the zygote itself — it ``unshare``s ``NEWNS|NEWPID|NEWIPC``,
  mounts fresh size-capped tmpfs at ``/workspace``, ``/tmp`` and ``/dev/shm``, forks B and
  returns to its own namespaces with ``setns``, keeping a handle on the job's mount namespace;
  for a session command a forked process **A** that keeps the session's workspace (the zygote
  stays free for the session's file operations). On the request the keeper writes the input
  files into the job's mount namespace (a manifest read from a memfd, linear in the input
  size), makes its root read-only, enforces the wall clock, after the program ended collects
  wanted files from the workspace itself and reports the verdict on the job socket. The
  program never holds that socket and cannot see its keeper (outside its pid namespace,
  non-dumpable). One-shot jobs share the slot's own network namespace (loopback only; with
  ``tcp_max_tw_buckets`` 0 a job leaves no port taken, and its sockets die with its pid
  namespace) unless that sysctl cannot be set, in which case each job gets a fresh one.
* **B** (init, pid 1 of the job's pid namespace): mounts ``/proc``, forks C, reaps, exits
  with C's status; its exit kills every process left in the namespace.
* **C** (the program): a nested user namespace mapping uid 1000, rlimits, every capability
  dropped, ``no_new_privs``, ``oom_score_adj`` 1000, the seccomp filter; reports "ready" on a
  pipe and closes it, then either ``execve``s the command or — for Python ``main.py`` —
  runs it in this already-started interpreter (the fast path: a fork instead of an
  interpreter start-up).

Setup failures therefore arrive on channels the program cannot write to (the ready pipe is
closed before user code runs; the job socket never reaches C). Run with ``python3 -u -c SRC``.
"""

import contextlib
import ctypes
import errno
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import struct
import sys
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT = 28, 38, 22, 47
SECCOMP_MODE_FILTER = 2
SANDBOX_UID = 1000
MAX_MSG = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src, target, fstype, flags, data=None):
    _check(_libc.mount(src and src.encode(), target.encode(), fstype and fstype.encode(), flags,
                       data and data.encode()), "mount " + target)


def _unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def _setns(fd, nstype):
    _check(_libc.setns(fd, nstype), "setns")


def _write(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class _Prepared:
    """A job set up ahead of its request: its init (B), the program's channel and ready pipe."""

    def __init__(self):
        self.b, self.mnt, self.to_c, self.ready_r, self.error = 0, None, None, None, None
        self.owned, self.fds = [], []  # sockets and descriptors the keeper opened for the run

    def close(self):
        for sock in [self.to_c, *self.owned]:
            if sock is not None:
                sock.close()
        for fd in [self.mnt, self.ready_r, *self.fds]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.to_c = self.mnt = self.ready_r = None
        self.owned, self.fds = [], []


class _Child:
    """What ``_setup_job`` returns in the program (C): the job it runs in this interpreter, if any."""

    def __init__(self, job):
        self.job = job


class Zygote:
    def __init__(self, ctl_fd, seccomp_fd, mode, workspace_mb=16, tmp_mb=16):
        self.ctl = socket.socket(fileno=int(ctl_fd))
        seccomp_fd = int(seccomp_fd)
        self.mode = mode  # "oneshot" | "session"
        self.workspace_mb, self.tmp_mb = int(workspace_mb), int(tmp_mb)
        # Jobs forked ahead: two for one-shot slots (one can be set up while the other is used).
        self.spares = 2 if mode == "oneshot" else 1
        self.seccomp = None
        if seccomp_fd >= 0:
            data = b""
            while True:
                chunk = os.read(seccomp_fd, 1 << 16)
                if not chunk:
                    break
                data += chunk
            os.close(seccomp_fd)
            self._seccomp_buf = ctypes.create_string_buffer(data, len(data))
            self.seccomp = _SockFprog(len(data) // 8, ctypes.addressof(self._seccomp_buf))
        self.cap_last = int(open("/proc/sys/kernel/cap_last_cap").read())
        # /proc entries the program must not write (read-only bind mounts in B), looked up once.
        self.proc_masked = [sub for sub in ("sys", "sysrq-trigger", "irq", "bus") if os.path.exists("/proc/" + sub)]
        # A one-shot job gets a fresh network namespace unless this slot's own one (bwrap's, loopback
        # only, nothing else in it) can be made to forget a job: sockets close when the job's pid
        # namespace dies, and with no TIME_WAIT buckets no port stays taken for the next job.
        self.job_netns = True
        if mode == "oneshot":
            try:
                _write("/proc/sys/net/ipv4/tcp_max_tw_buckets", "0")
                self.job_netns = int(open("/proc/sys/net/ipv4/tcp_max_tw_buckets").read()) != 0
            except OSError:
                pass
        # One-shot jobs are kept by the zygote itself (a process less per run); a session's commands
        # by a keeper process each, so the zygote stays free for the session's file operations.
        self.in_place = mode == "oneshot"
        self.home = {}
        if self.in_place:
            _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            for flag, name in ((CLONE_NEWNS, "mnt"), (CLONE_NEWIPC, "ipc"), (CLONE_NEWNET, "net"),
                               (CLONE_NEWPID, "pid")):
                self.home[flag] = os.open("/proc/self/ns/" + name, os.O_RDONLY | os.O_CLOEXEC)
        self._spares = []
        if mode == "session":
            # bwrap sets a size only: bound the inodes too (a million empty files is kernel memory).
            for path, size in (("/workspace", self.workspace_mb), ("/tmp", self.tmp_mb), ("/.ck", self.workspace_mb)):
                _mount(None, path, None, MS_REMOUNT | MS_NOSUID | MS_NODEV,
                       "size=%dm,nr_inodes=%d" % (size, max(1024, size * 256)))

    # ------------------------------------------------------------ zygote loop
    def serve(self):
        """Answer control messages until the server closes the socket. Returns only in a program (C).

        Jobs are prepared ahead (``spares``): their namespaces, mounts, init and program process
        exist before the request arrives, so a run costs a message, not a set-up.
        """
        self.ctl.settimeout(1.0)
        spares = self._spares = []
        while True:
            if not self.in_place:
                _reap()
            while len(spares) < self.spares:
                gc.freeze()  # the children's collections skip the zygote's objects
                if self.in_place:
                    prepared = self._prepare_here()
                    if isinstance(prepared, _Child):
                        return prepared.job
                    spares.append(prepared)
                    continue
                parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                pid = os.fork()
                if pid == 0:
                    for other in spares:
                        other.close()
                    parent_end.close()
                    return self.keeper(child_end)
                child_end.close()
                spares.append(parent_end)
            try:
                msg, fds, _, _ = socket.recv_fds(self.ctl, MAX_MSG, 16)
            except (InterruptedError, TimeoutError):
                continue
            if not msg:
                os._exit(0)
            try:
                req = json.loads(msg)
            except ValueError:
                for fd in fds:
                    os.close(fd)
                continue
            op = req.get("op")
            if op == "run" and self.in_place:
                self._run_here(spares.pop(0), msg, req, fds)
            elif op == "run":
                spare = spares.pop(0)  # the oldest: its set-up is done
                try:
                    socket.send_fds(spare, [msg], fds)
                except OSError:
                    pass  # the spare died: the job socket closes and the server sees a setup failure
                for fd in fds:
                    os.close(fd)
                spare.close()
            else:
                try:
                    reply = self.file_op(req, fds)
                except OSError as exc:
                    reply = {"error": "%s: %s" % (req.get("path", ""), os.strerror(exc.errno or errno.EIO)),
                             "errno": exc.errno}
                except Exception as exc:  # noqa: BLE001 - answer, never die
                    reply = {"error": "%s: %s" % (type(exc).__name__, exc)}
                finally:
                    for fd in fds:
                        os.close(fd)
                self._reply(reply)

    def _reply(self, reply):
        body = reply.pop("_data", b"")
        _send_frames(self.ctl, json.dumps(reply).encode(), body)

    # ------------------------------------------------------------ a job's set-up (before its request)
    def _job_flags(self):
        flags = CLONE_NEWNS | CLONE_NEWPID
        if self.mode == "oneshot":
            # SysV IPC objects outlive their processes: always fresh. The hostname is bwrap's
            # (the program cannot change it: it holds no capability over this UTS namespace).
            flags |= CLONE_NEWIPC | (CLONE_NEWNET if self.job_netns else 0)
        return flags

    def _setup_job(self, flags, drop):
        """New namespaces for a job, its mounts, and its init (B) with the program (C) waiting in it.

        Returns a ``_Prepared`` in the caller and a ``_Child`` in the program (C). ``drop``
        closes, in B, what the caller holds that the job must not (sockets, namespace handles).
        """
        prep = _Prepared()
        try:
            _unshare(flags)
            if self.in_place:
                prep.mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            _mount(None, "/", None, MS_REC | MS_PRIVATE)
            if self.mode == "oneshot":
                for path, size, mode in (("/workspace", self.workspace_mb, "0755"), ("/tmp", self.tmp_mb, "1777"),
                                         ("/dev/shm", self.tmp_mb, "1777")):
                    _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV,
                           "size=%dm,mode=%s,nr_inodes=%d" % (size, mode, max(1024, size * 256)))
            else:
                # Session command: the session's /workspace and /tmp persist; the snapshot stays hidden.
                _mount("tmpfs", "/.ck", "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k")
            _mount(None, "/dev", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
            prep.to_c, c_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            prep.ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
            b = os.fork()
            if b == 0:
                prep.to_c.close()
                os.close(prep.ready_r)
                drop(prep)
                return _Child(self.init(c_end, ready_w))
            prep.b = b
            c_end.close()
            os.close(ready_w)
        except Exception as exc:  # noqa: BLE001
            prep.error = "setup: %s" % exc
        return prep

    def _prepare_here(self):
        """A one-shot job set up by the zygote itself, which then returns to its own namespaces."""
        flags = self._job_flags()
        prep = self._setup_job(flags, self._drop_in_b)
        if isinstance(prep, _Child):
            return prep  # in the program: never go back
        try:
            for flag in (CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID):
                if flags & flag:
                    _setns(self.home[flag], flag)
        except OSError:
            os._exit(70)  # cannot return to its own namespaces: the server starts a new warm sandbox
        return prep

    def _drop_in_b(self, prep):
        """In B forked by the zygote: close the zygote's control socket, namespaces and other spares."""
        self.ctl.close()
        for fd in self.home.values():
            os.close(fd)
        for other in self._spares:
            other.close()
        os.close(prep.mnt)

    def _enter(self, prep):
        if prep.mnt is not None:
            _setns(prep.mnt, CLONE_NEWNS)

    def _leave(self, prep):
        if prep.mnt is not None:
            try:
                _setns(self.home[CLONE_NEWNS], CLONE_NEWNS)
            except OSError:
                os._exit(70)

    # ------------------------------------------------------------ a job's run (after its request)
    def _run_here(self, prep, msg, req, fds):
        """Run a one-shot job on a prepared set; the zygote is its keeper. Never raises."""
        job = socket.socket(fileno=fds[0])
        prep.owned.append(job)
        prep.fds.extend(fds[1:])
        try:
            self._finish(prep, msg, req, job, fds[1:4], fds[4] if len(fds) > 4 else -1)
        except Exception as exc:  # noqa: BLE001 - a keeper bug must not end the slot
            with contextlib.suppress(Exception):
                _send_json(job, {"ev": "setup_failed", "error": "keeper: %s" % exc})
        finally:
            if prep.b:
                _kill(prep.b)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(prep.b, 0)
                prep.b = 0
            prep.close()

    def _finish(self, prep, msg, req, job, stdio, bundle):
        """Files in, start the program, enforce the wall clock, files out, the verdict on the job socket.

        The program never holds the job socket and cannot see its keeper (outside its pid namespace).
        """
        error = prep.error
        if error is None:
            try:
                self._enter(prep)
                try:
                    if bundle >= 0:
                        _unpack(os.dup(bundle))
                    _mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
                finally:
                    self._leave(prep)
            except Exception as exc:  # noqa: BLE001
                error = "setup: %s" % exc
        if error is not None:
            _send_json(job, {"ev": "setup_failed", "error": error})
            return
        try:
            socket.send_fds(prep.to_c, [msg], stdio)
        except OSError:
            pass
        for fd in stdio:  # only the program holds its stdio now: EOF when it is done with it
            if fd in prep.fds:
                prep.fds.remove(fd)
            os.close(fd)
        prep.to_c.close()
        prep.to_c = None
        status = b""
        while True:
            chunk = os.read(prep.ready_r, 4096)
            if not chunk:
                break
            status += chunk
        start = time.monotonic()
        b = prep.b
        if status != b"ok":
            _kill(b)
            os.waitpid(b, 0)
            prep.b = 0
            _send_json(job, {"ev": "setup_failed", "error": status.decode(errors="replace") or "sandbox setup failed"})
            return
        timeout = float(req["limits"]["timeout_s"])
        pidfd = os.pidfd_open(b)
        prep.fds.append(pidfd)
        deadline = start + timeout
        timed_out = killed = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([pidfd, job], [], [], left)
            if pidfd in ready:
                break
            if job in ready:
                killed = True  # the server asked (output over the cap, or it gave up)
                break
        if timed_out or killed:
            _kill(b)
        _, st = os.waitpid(b, 0)
        prep.b = 0
        elapsed = time.monotonic() - start
        code = os.waitstatus_to_exitcode(st)
        if code < 0:
            code = 128 - code
        result = {"ev": "exit", "code": code, "timed_out": timed_out, "killed": killed, "elapsed": elapsed}
        files = []
        if req.get("collect") is not None and not timed_out and not killed:
            try:
                self._enter(prep)
                try:
                    files = _collect(req["collect"], int(req.get("collect_bytes", 1 << 20)),
                                     int(req.get("collect_files", 1024)))
                finally:
                    self._leave(prep)
            except OSError as exc:
                result["collect_error"] = str(exc)
        result["files"] = [[p, len(d), ex] for p, d, ex in files]
        try:
            _send_frames(job, json.dumps(result).encode(), b"".join(d for _, d, _ in files))
        except OSError:
            pass

    # ------------------------------------------------------------ A: the job keeper (sessions)
    def keeper(self, zsock):
        """Runs in A (pre-forked for a session command); returns only in C (the program)."""
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        self.ctl.close()
        zsock.settimeout(None)

        def drop(_prep):
            zsock.close()

        prep = self._setup_job(self._job_flags(), drop)
        if isinstance(prep, _Child):
            return prep.job
        # Wait for the job (or for the zygote to go away).
        try:
            msg, fds, _, _ = socket.recv_fds(zsock, MAX_MSG, 16)
        except OSError:
            os._exit(0)
        if not msg:
            os._exit(0)
        job = socket.socket(fileno=fds[0])
        self._finish(prep, msg, json.loads(msg), job, fds[1:4], fds[4] if len(fds) > 4 else -1)
        os._exit(0)

    # ------------------------------------------------------------ B: the namespace's init
    def init(self, c_end, ready_w):
        """Runs in B (pid 1); returns only in C."""
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        try:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            for sub in self.proc_masked:
                _mount("/proc/" + sub, "/proc/" + sub, None, MS_BIND)
                _mount("/proc/" + sub, "/proc/" + sub, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID
                       | MS_NODEV | MS_NOEXEC)
        except Exception as exc:  # noqa: BLE001
            os.write(ready_w, ("setup: %s" % exc).encode())
            os._exit(1)
        c = os.fork()
        if c == 0:
            return self.program(c_end, ready_w)
        os.close(ready_w)
        c_end.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                os._exit(0)
            except InterruptedError:
                continue
            if pid == c:
                code = os.waitstatus_to_exitcode(st)
                os._exit(code if code >= 0 else 128 - code)

    # ------------------------------------------------------------ C: the program
    def program(self, c_end, ready_w):
        try:
            # Everything that does not depend on the job happens before it arrives.
            os.setsid()
            _write("/proc/self/oom_score_adj", "1000")
            _unshare(CLONE_NEWUSER)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", "%d 0 1" % SANDBOX_UID)
            _write("/proc/self/gid_map", "%d 0 1" % SANDBOX_UID)
            msg, stdio, _, _ = socket.recv_fds(c_end, MAX_MSG, 8)
            if not msg:
                os._exit(1)
            c_end.close()
            req = json.loads(msg)
            lim = req["limits"]
            for i, fd in enumerate(stdio):
                os.dup2(fd, i)
                os.close(fd)
            mib = 1 << 20
            cpu = int(lim["timeout_s"]) + 2
            for res, value in ((resource.RLIMIT_DATA, lim["memory_mb"] * mib), (resource.RLIMIT_NPROC, lim["processes"]),
                               (resource.RLIMIT_FSIZE, lim["file_size_mb"] * mib),
                               (resource.RLIMIT_NOFILE, lim["open_files"]), (resource.RLIMIT_CPU, cpu),
                               (resource.RLIMIT_CORE, 0), (resource.RLIMIT_MEMLOCK, 0),
                               (resource.RLIMIT_MSGQUEUE, 0)):
                hard = value + 1 if res == resource.RLIMIT_CPU else value
                resource.setrlimit(res, (value, hard))
            os.chdir(req.get("cwd") or "/workspace")
            env = req["env"]
            self._drop_caps()
            if self.seccomp is not None:
                _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(self.seccomp), 0, 0),
                       "seccomp")
            for sig in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(sig, signal.SIG_DFL)
            os.write(ready_w, b"ok")
            os.closerange(3, 1 << 16)
        except Exception as exc:  # noqa: BLE001
            os.write(ready_w, ("setup: %s" % exc).encode())
            os._exit(1)
        if req.get("python_main"):
            # Python's own SIGPIPE/SIGXFSZ dispositions (ignored), as in a fresh interpreter.
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.environ.clear()
            os.environ.update(env)
            return req
        try:
            os.execve(req["argv"][0], req["argv"], env)
        except OSError as exc:
            os.write(2, ("exec %s: %s\n" % (req["argv"][0], exc.strerror)).encode())
            os._exit(127)

    def _drop_caps(self):
        _check(_libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0), "ambient")  # PR_CAP_AMBIENT_CLEAR_ALL
        for cap in range(self.cap_last + 1):
            _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
        _check(_libc.prctl(PR_SET_SECUREBITS, 0x2F, 0, 0, 0), "securebits")  # NOROOT, NO_SETUID_FIXUP (+locks)
        header = _CapHeader(0x20080522, 0)
        data = (_CapData * 2)()
        _check(_libc.syscall(126 if _arch() == "x86_64" else 91, ctypes.byref(header), data), "capset")
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")

    # ------------------------------------------------------------ session file operations
    def file_op(self, req, fds):
        op = req.get("op")
        if op == "ping":
            return {"ok": True}
        path = req.get("path") or "."
        if op == "read":
            fd = _open_in("/workspace", path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the zygote
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(errno.EISDIR, "not a regular file")
                if st.st_size > int(req["max_bytes"]):
                    return {"error": "%s: %d bytes exceed the limit of %d" % (path, st.st_size, req["max_bytes"]),
                            "too_large": True}
                data = _read_all(fd, int(req["max_bytes"]) + 1)
            finally:
                os.close(fd)
            return {"size": len(data), "_data": data}
        if op == "write":
            data = _read_all(fds[0], int(req["size"])) if fds else b""
            parent, name = os.path.split(path)
            dfd = _open_in("/workspace", parent or ".", os.O_RDONLY | os.O_DIRECTORY, make_dirs=True)
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644, dir_fd=dfd)
            finally:
                os.close(dfd)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(errno.EISDIR, "not a regular file")
                os.ftruncate(fd, 0)
                os.fchown(fd, 0, 0)
                _write_all(fd, data)
            finally:
                os.close(fd)
            return {"size": len(data)}
        if op == "list":
            entries = _walk(path, int(req.get("max_entries", 10000)))
            return {"entries": entries}
        if op == "snapshot":
            _copy_tree("/workspace", "/.ck/snapshot")
            return {"ok": True}
        if op == "diff":
            return {"_data": _diff(int(req.get("max_bytes", 1 << 20))).encode()}
        raise OSError(errno.EINVAL, f"unknown op {op!r}")


def _arch():
    return os.uname().machine


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _kill(pid):
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _read_all(fd, limit):
    parts, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _send_json(sock, obj):
    _send_frames(sock, json.dumps(obj).encode(), b"")


def _send_frames(sock, head, body):
    """One reply: <u32 head length><u64 body length> head body, in SEQPACKET messages of at most 64 KiB."""
    blob = struct.pack("<IQ", len(head), len(body)) + head + body
    view = memoryview(blob)
    while view:
        sock.send(view[:1 << 16])
        view = view[1 << 16:]


def _open_in(root, rel, flags, make_dirs=False):
    """Open ``rel`` under ``root`` walking one component at a time, never following a symlink."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        os.close(fd)
        raise OSError(errno.EACCES, "'..' in path")
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            want = flags if last else os.O_RDONLY | os.O_DIRECTORY
            try:
                nfd = os.open(part, want | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not make_dirs:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nfd = os.open(part, want | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _unpack(fd):
    """Write the input files: a manifest of ``<u32 header length> {"p": path, "n": size, "x": exec} data`` records."""
    f = os.fdopen(fd, "rb")
    while True:
        raw = f.read(4)
        if len(raw) < 4:
            break
        (hlen,) = struct.unpack("<I", raw)
        head = json.loads(f.read(hlen))
        path, size = head["p"], head["n"]
        root = "/tmp" if path.startswith("/tmp/") else "/workspace"
        rel = path[len("/tmp/"):] if root == "/tmp" else path
        parent, name = os.path.split(rel)
        dfd = _open_in(root, parent or ".", os.O_RDONLY | os.O_DIRECTORY, make_dirs=True)
        try:
            out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                          0o755 if head.get("x") else 0o644, dir_fd=dfd)
        finally:
            os.close(dfd)
        try:
            left = size
            while left:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    raise OSError(errno.EIO, "truncated input bundle")
                _write_all(out, chunk)
                left -= len(chunk)
        finally:
            os.close(out)
    f.close()


def _collect(wanted, max_bytes, max_files):
    """Regular files from /workspace (never following links): ``["."]`` is everything."""
    out, total = [], [0]

    def take(rel, fd):
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or len(out) >= max_files:
            return
        if total[0] + st.st_size > max_bytes:
            raise OSError(errno.EFBIG, "fetched files exceed %d bytes" % max_bytes)
        data = _read_all(fd, st.st_size)
        total[0] += len(data)
        out.append((rel, data, bool(st.st_mode & 0o111)))

    if wanted == ["."]:
        for rel in _walk_files("/workspace"):
            try:
                fd = _open_in("/workspace", rel, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                take(rel, fd)
            finally:
                os.close(fd)
        return out
    for path in wanted:
        root, rel = ("/tmp", path[5:]) if path.startswith("/tmp/") else ("/workspace", path)
        try:
            fd = _open_in(root, rel, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            take(path, fd)
        finally:
            os.close(fd)
    return out


def _walk_files(root, limit=100000):
    stack, found = [""], []
    while stack and len(found) < limit:
        rel = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel) if rel else root))
        except OSError:
            continue
        for e in entries:
            sub = rel + "/" + e.name if rel else e.name
            if e.is_dir(follow_symlinks=False):
                stack.append(sub)
            elif e.is_file(follow_symlinks=False):
                found.append(sub)
    return sorted(found)


def _walk(rel, limit):
    fd = _open_in("/workspace", rel, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    base = "/workspace/" + rel.strip("/") if rel.strip("/.") else "/workspace"
    out, stack = [], [base]
    while stack and len(out) < limit:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            path = e.path[len("/workspace/"):]
            if e.is_dir(follow_symlinks=False):
                out.append({"path": path, "type": "dir", "size": 0})
                stack.append(e.path)
            elif e.is_file(follow_symlinks=False):
                out.append({"path": path, "type": "file", "size": e.stat(follow_symlinks=False).st_size})
            else:
                out.append({"path": path, "type": "other", "size": 0})
            if len(out) >= limit:
                break
    return sorted(out, key=lambda e: e["path"])


def _copy_tree(src, dst):
    import shutil

    if os.path.exists(dst):
        shutil.rmtree(dst)
    def copy_regular(a, b):
        if stat.S_ISREG(os.lstat(a).st_mode):  # FIFOs, sockets and devices are not part of the snapshot
            shutil.copy2(a, b)

    shutil.copytree(src, dst, symlinks=True, copy_function=copy_regular)


def _diff(max_bytes):
    import difflib

    old = set(_walk_files("/.ck/snapshot"))
    new = set(_walk_files("/workspace"))
    chunks, size = [], 0
    for rel in sorted(old | new):
        a = _text("/.ck/snapshot/" + rel) if rel in old else []
        b = _text("/workspace/" + rel) if rel in new else []
        if a == b:
            continue
        if a is None or b is None:
            piece = f"Binary files a/{rel} and b/{rel} differ\n"
        else:
            piece = "".join(difflib.unified_diff(a, b, "a/" + rel if rel in old else "/dev/null",
                                                 "b/" + rel if rel in new else "/dev/null"))
        chunks.append(piece)
        size += len(piece)
        if size > max_bytes:
            chunks.append("... diff truncated at %d bytes\n" % max_bytes)
            break
    return "".join(chunks)


def _text(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = _read_all(fd, 8 << 20)
    except OSError:
        return []
    finally:
        os.close(fd)
    if b"\0" in data:
        return None
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return None
    lines = text.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def _run_python_main(job):
    """Run /workspace/main.py as ``python3 -u main.py`` would, in this forked interpreter (C); never returns.

    The interpreter is not finalized at the end: tearing down the modules it shares with the
    zygote would copy most of its heap page by page (copy-on-write), tens of ms. What a program
    can observe of an exit still happens: non-daemon threads are joined, ``atexit`` handlers run,
    the program's own globals are released (closing and flushing its files), stdio is flushed.
    """
    import atexit
    import gc
    import random
    import threading
    import types

    random.seed()
    path = "/workspace/" + job["python_main"]
    sys.argv = [job["python_main"], *job.get("args", [])]
    sys.path[0] = "/workspace"
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__
    main.__cached__ = None
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as fh:
            source = fh.read()
        exec(compile(source, path, "exec"), main.__dict__)  # noqa: S102 - the sandboxed program
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException:  # noqa: BLE001 - report as the interpreter would, without our frames
        code = _report(path)
    for step in (threading._shutdown, atexit._run_exitfuncs):
        try:
            step()
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:  # noqa: BLE001
            code = _report(path)
    try:
        main.__dict__.clear()
        gc.collect()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BaseException:  # noqa: BLE001
        pass
    os._exit(code)


def _exit_code(exc):
    """The process exit status of a SystemExit, as the interpreter computes it."""
    value = exc.code
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    try:
        sys.stderr.write(str(value) + "\n")
    except BaseException:  # noqa: BLE001
        pass
    return 1


def _report(path):
    etype, value, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename != path:
        tb = tb.tb_next
    if value is not None:
        value.__traceback__ = tb
    try:
        sys.excepthook(etype, value, tb)
    except BaseException:  # noqa: BLE001
        pass
    return 1


def _preload():
    """Warm the interpreter: modules most programs (and the test harness) import, loaded once per sandbox."""
    for name in ("random", "types", "ast", "traceback", "collections", "datetime", "decimal", "fractions", "re",
                 "math", "itertools", "functools", "typing", "string", "heapq", "bisect", "copy", "dataclasses"):
        try:
            __import__(name)
        except ImportError:
            pass


if __name__ == "__main__":
    _preload()
    _job = Zygote(*sys.argv[1:]).serve()
    del Zygote
    _run_python_main(_job)
