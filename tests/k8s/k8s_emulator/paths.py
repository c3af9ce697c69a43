"""URL parsing fix for kmock 0.8: ``/api/v1/namespaces[/name[/sub]]`` addresses Namespace objects.

kmock reads ``namespaces/<x>`` as a namespace prefix even when nothing follows, so listing or
fetching Namespaces fails to parse. The fixed parser treats ``namespaces/<ns>/<plural>...`` as a
namespaced path and anything shorter as the ``namespaces`` resource itself.
"""

from __future__ import annotations

from kmock._internal import parsing

_original = parsing.parse_path


def parse_path(path: str) -> parsing.ParsedPath:
    """Parse an API path into group, version, plural, namespace, name and subresource."""
    parts = path.strip("/").split("/")
    if parts and parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    elif parts and parts[0] == "api" and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    else:
        return _original(path)
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return parsing.ParsedPath(group, version, plural, namespace, name, subresource)


def install() -> None:
    """Replace kmock's path parser (idempotent)."""
    parsing.parse_path = parse_path
