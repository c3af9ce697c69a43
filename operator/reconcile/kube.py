"""A small async Kubernetes REST client (aiohttp) for the objects codekiln manages.

kopf keeps its own connection for watching; this client does the reconciler's reads and
writes with plain JSON (no model classes), so a reconcile costs a few cheap requests.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from codekiln.operator.metrics import API_REQUESTS
from codekiln.operator.version import __version__
from codekiln.workloads import contract

# Every write names the operator: managedFields show "codekiln-operator", audit logs the User-Agent.
FIELD_MANAGER = "codekiln-operator"
USER_AGENT = f"codekiln-operator/{__version__}"

PLURALS: dict[str, str] = contract.PLURALS  # builtin kinds and codekiln's, one table


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


@dataclass
class KubeConfig:
    """Where the API server is and how to authenticate (token, client certificate, CA)."""

    server: str
    token: str | None = None
    ca_path: str | None = None
    insecure: bool = False
    cert_path: str | None = None
    key_path: str | None = None
    refresh_token: Any = None  # callable returning a fresh bearer token (in-cluster projected tokens)
    _refreshed_at: float = field(default=0.0, repr=False)

    @classmethod
    def from_kubernetes(cls) -> KubeConfig:
        """In-cluster service account first, then ~/.kube/config (as kubectl would)."""
        import kubernetes

        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        config = kubernetes.client.Configuration.get_default_copy()

        def token() -> str | None:
            if config.refresh_api_key_hook is not None:
                config.refresh_api_key_hook(config)
            header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
            return header.split(" ", 1)[-1] if header else None

        return cls(server=config.host, token=token(), ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl,
                   cert_path=config.cert_file, key_path=config.key_file, refresh_token=token)

    def bearer(self) -> str | None:
        if self.refresh_token is not None and time.monotonic() - self._refreshed_at > 60:
            self.token, self._refreshed_at = self.refresh_token(), time.monotonic()
        return self.token


def api_path(api_version: str, plural: str, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


class KubeClient:
    """CRUD on namespaced objects; every method raises :class:`ApiError` on failure (404 → None/False)."""

    def __init__(self, config: KubeConfig, *, timeout_s: float = 30.0, max_connections: int = 32,
                 user_agent: str = USER_AGENT, field_manager: str = FIELD_MANAGER):
        self.config = config
        self.user_agent, self.field_manager = user_agent, field_manager
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    async def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            context: ssl.SSLContext | bool | None = None
            if self.config.server.startswith("https"):
                if self.config.insecure:
                    context = False
                else:
                    context = ssl.create_default_context(cafile=self.config.ca_path)
                    if self.config.cert_path:
                        context.load_cert_chain(self.config.cert_path, self.config.key_path)
            connector = aiohttp.TCPConnector(ssl=context, limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json") -> dict[str, Any] | None:
        session = await self._ensure()
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if method in ("POST", "PATCH", "PUT"):
            params = {**(params or {}), "fieldManager": self.field_manager}
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = content_type
        self.requests += 1
        API_REQUESTS.labels(method).inc()
        for attempt in range(3):
            try:
                async with session.request(method, self.config.server.rstrip("/") + path, json=body,
                                           params=params, headers=headers) as response:
                    payload = await response.json(content_type=None) if response.content_length != 0 else None
                    if response.status == 404:
                        return None
                    if response.status >= 400:
                        payload = payload if isinstance(payload, dict) else {}
                        raise ApiError(response.status, payload.get("reason", response.reason or ""),
                                       payload.get("message", str(payload)))
                    return payload
            except (TimeoutError, aiohttp.ClientConnectionError):
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        return None

    # ------------------------------------------------------------- verbs
    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.request("GET", api_path(api_version, PLURALS[kind], namespace, name))

    async def list(self, api_version: str, kind: str, namespace: str, labels: str | None = None) -> list[dict]:
        params = {"labelSelector": labels} if labels else None
        found = await self.request("GET", api_path(api_version, PLURALS[kind], namespace), params=params)
        return list((found or {}).get("items") or [])

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        path = api_path(manifest["apiVersion"], PLURALS[manifest["kind"]], meta.get("namespace"))
        created = await self.request("POST", path, body=manifest)
        if created is None:
            raise ApiError(404, "NotFound", f"{manifest['kind']} is not served by this cluster ({path})")
        return created

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, body: dict[str, Any], *,
                    subresource: str | None = None) -> dict[str, Any] | None:
        """JSON merge patch (``None`` when the object is gone)."""
        return await self.request("PATCH", api_path(api_version, PLURALS[kind], namespace, name, subresource),
                                  body=body, content_type="application/merge-patch+json")

    async def delete(self, api_version: str, kind: str, namespace: str, name: str,
                     propagation: str = "Background") -> bool:
        """Delete (dependents per ``propagation``); False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        found = await self.request("DELETE", api_path(api_version, PLURALS[kind], namespace, name), body=body)
        return found is not None
