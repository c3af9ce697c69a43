"""A small synchronous HTTP client for tests (httpx), addressing objects by apiVersion + kind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from kmock import resource

from .patches import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from .server import EmulatorThread


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP code and ``body`` the decoded Status object."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class KubeClient:
    """Talks to an :class:`EmulatorThread` over HTTP, the way any Kubernetes client would."""

    def __init__(self, k8s: EmulatorThread, timeout: float = 30.0) -> None:
        self.k8s = k8s
        self.http = httpx.Client(base_url=k8s.url, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.http.close()

    def resource_for(self, api_version: str, kind: str) -> resource:
        """Find the served resource (plural) of an apiVersion + kind."""
        group, _, version = api_version.rpartition("/")
        for res, info in list(self.k8s.emulator.resources.items()):
            if res.group == group and res.version == version and info.kind == kind:
                return res
        raise LookupError(f"the emulator serves no {kind} in {api_version}")

    @staticmethod
    def path(res: resource, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        """The URL path of a collection or an object."""
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        parts = [base] + (["namespaces", namespace] if namespace else []) + [str(res.plural)]
        parts += [name] if name else []
        parts += [sub] if sub else []
        return "/".join(parts)

    def _call(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
              content_type: str = "application/json") -> Any:
        content = None if body is None else json.dumps(body)
        response = self.http.request(method, path, content=content, params=params,
                                     headers={"Content-Type": content_type})
        data = response.json() if response.content else None
        if response.status_code >= 300:
            raise ApiError(response.status_code, data)
        return data

    def _where(self, api_version: str, kind: str) -> resource:
        return self.resource_for(api_version, kind)

    def create(self, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        """POST an object (its namespace from the argument or its metadata)."""
        res = self._where(obj["apiVersion"], obj["kind"])
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return self._call("POST", self.path(res, ns), body=obj)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None,
            sub: str | None = None) -> dict[str, Any]:
        """GET one object (or its ``status``/``scale`` subresource)."""
        return self._call("GET", self.path(self._where(api_version, kind), namespace, name, sub))

    def list(self, api_version: str, kind: str, namespace: str | None = None, **params: str) -> dict[str, Any]:
        """GET a collection; ``params`` are query parameters such as ``labelSelector``."""
        return self._call("GET", self.path(self._where(api_version, kind), namespace), params=params)

    def replace(self, obj: dict[str, Any], sub: str | None = None) -> dict[str, Any]:
        """PUT a whole object (or its status with ``sub='status'``)."""
        md = obj["metadata"]
        res = self._where(obj["apiVersion"], obj["kind"])
        return self._call("PUT", self.path(res, md.get("namespace"), md["name"], sub), body=obj)

    def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
              sub: str | None = None, patch_type: str = "merge") -> dict[str, Any]:
        """PATCH with ``patch_type`` ``merge`` (default), ``json`` or ``strategic``."""
        ctype = {"merge": MERGE_PATCH, "json": JSON_PATCH, "strategic": STRATEGIC_PATCH}[patch_type]
        return self._call("PATCH", self.path(self._where(api_version, kind), namespace, name, sub),
                          body=patch, content_type=ctype)

    def patch_status(self, api_version: str, kind: str, name: str, status: dict[str, Any],
                     namespace: str | None = None) -> dict[str, Any]:
        """Merge-patch the status subresource, as kubelet or the Job controller would."""
        return self.patch(api_version, kind, name, {"status": status}, namespace, sub="status")

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               propagation: str | None = None) -> dict[str, Any]:
        """DELETE one object (``propagation``: Background, Foreground or Orphan)."""
        body = {"propagationPolicy": propagation} if propagation else None
        return self._call("DELETE", self.path(self._where(api_version, kind), namespace, name), body=body)

    def watch(self, api_version: str, kind: str, namespace: str | None = None, **params: str) -> Iterator[Any]:
        """Stream watch events (dicts) until the server ends the stream (use ``timeoutSeconds``)."""
        query = {"watch": "true", **params}
        path = self.path(self._where(api_version, kind), namespace)
        with self.http.stream("GET", path, params=query, timeout=None) as response:
            if response.status_code >= 300:
                response.read()
                raise ApiError(response.status_code, response.json())
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)
