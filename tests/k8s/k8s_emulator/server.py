"""Serve the emulator on a real HTTP port from its own thread and event loop.

Sync tests, async tests and kopf (which runs its own loop in ``KopfRunner``'s thread) can all talk to it.
State is only touched on the emulator's loop: use :meth:`EmulatorThread.call` for direct access.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import kmock
import yaml

from .emulator import Emulator

T = TypeVar("T")


class EmulatorThread:
    """An :class:`Emulator` listening on ``127.0.0.1:<port>`` in a daemon thread.

    Example::

        with EmulatorThread(crds=build_crds()) as k8s:
            k8s.write_kubeconfig(tmp_path / "kubeconfig")   # or: monkeypatch.setenv("KUBECONFIG", ...)
            obj = k8s.call(k8s.emulator.get, resource("batch/v1/jobs"), "ns", "name")
    """

    def __init__(self, *, crds: Iterable[dict[str, Any]] = (), namespaces: Iterable[str] = (),
                 bookmark_interval: float = 5.0,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.emulator = Emulator(bookmark_interval=bookmark_interval)
        self._crds = list(crds)
        self._namespaces = list(namespaces)
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.url = ""
        self._saved: tuple[str | None, str] | None = None

    # ----------------------------------------------------------------------------------- lifecycle

    def start(self) -> EmulatorThread:
        """Start serving; returns when the port accepts connections (CRDs already installed)."""
        self._thread = threading.Thread(target=self._run, name="k8s-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the Kubernetes API emulator did not start within 30 s")
        if self._error is not None:
            raise RuntimeError(f"the Kubernetes API emulator failed to start: {self._error!r}") from self._error
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.emulator as emulator, kmock.Server(emulator, host=self._host, port=self._port) as server:
            emulator.install_crds(self._crds)
            for namespace in self._namespaces:
                emulator.ensure_namespace(namespace)
            self.url = f"http://{server.host}:{server.port}"
            self._ready.set()
            await self._stop.wait()
            # Close the watch streams before the server goes: otherwise aiohttp waits for them.
            await server.server.runner.shutdown()

    def stop(self) -> None:
        """Stop serving and join the thread (open watch streams are closed)."""
        self.deactivate()
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> EmulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------------------------- access

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the emulator's loop (thread-safe access to its state)."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")

        async def invoke() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(timeout=30)

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig document pointing at the emulator (plain HTTP, a dummy token)."""
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                           "namespace": namespace}}],
        }

    def write_kubeconfig(self, path: str | os.PathLike[str] | None = None) -> pathlib.Path:
        """Write :meth:`kubeconfig` to ``path`` (a temp file by default) and return the path."""
        if path is None:
            fd, name = tempfile.mkstemp(prefix="kubeconfig-", suffix=".yaml")
            os.close(fd)
            path = name
        target = pathlib.Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.kubeconfig()), encoding="utf-8")
        os.replace(tmp, target)
        return target

    def activate(self, path: str | os.PathLike[str] | None = None) -> pathlib.Path:
        """Point every client in this process at the emulator; returns the kubeconfig path.

        Sets ``KUBECONFIG`` (kopf's default login and ``kubernetes.config.load_kube_config()`` read it),
        patches the kubernetes client's import-time default kubeconfig location, and loads that config
        into the kubernetes client's default ``Configuration``. Undo with :meth:`deactivate`.
        """
        import kubernetes.config.kube_config as kube_config

        target = self.write_kubeconfig(path)
        self._saved = (os.environ.get("KUBECONFIG"), kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
        os.environ["KUBECONFIG"] = str(target)
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(target)
        kube_config.load_kube_config(config_file=str(target))
        return target

    def deactivate(self) -> None:
        """Restore what :meth:`activate` changed."""
        import kubernetes.config.kube_config as kube_config

        saved = getattr(self, "_saved", None)
        if saved is None:
            return
        env, location = saved
        if env is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = env
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = location
        self._saved = None
