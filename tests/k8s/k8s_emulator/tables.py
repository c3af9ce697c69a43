"""Server-side printing: ``kubectl get`` asks for ``application/json;as=Table;g=meta.k8s.io;v=v1``.

A CRD's ``additionalPrinterColumns`` are evaluated with the (simple) JSONPath kubectl uses
(``.a.b``, ``[N]``, ``[*]``, ``[?(@.k=="v")]``); builtin kinds get Name and Age. Cells keep the
column's declared type (an integer column of a list yields the raw value, so a wrong column shows
as kubectl shows it on a real server).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-$]+)|\[\?\(@\.([A-Za-z0-9_]+)\s*==\s*["']([^"']*)["']\)\]|\[(\*|\d+)\]""")
NAME_COLUMN = {"name": "Name", "type": "string", "format": "name", "description": "Name of the object",
               "priority": 0}
AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp", "priority": 0}


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in accept


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Every value ``path`` selects in ``obj`` (kubectl's subset of JSONPath)."""
    values = [obj]
    pos = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            return []
        pos = match.end()
        field, key, wanted, index = match.groups()
        out: list[Any] = []
        for value in values:
            if field is not None and isinstance(value, dict) and field in value:
                out.append(value[field])
            elif key is not None and isinstance(value, list):
                out += [item for item in value if isinstance(item, dict) and str(item.get(key)) == wanted]
            elif index == "*" and isinstance(value, list):
                out += value
            elif index is not None and index != "*" and isinstance(value, list) and int(index) < len(value):
                out.append(value[int(index)])
        values = out
    return values


def human_age(stamp: str, now: datetime | None = None) -> str:
    """A ``date`` cell as the API server prints it (its HumanDuration: 5s, 3m20s, 4h, 2d…)."""
    try:
        then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        return str(stamp)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _cell(obj: dict[str, Any], column: dict[str, Any]) -> Any:
    found = jsonpath(obj, column["jsonPath"])
    if not found:
        return None
    value = ",".join(str(v) for v in found) if len(found) > 1 else found[0]
    if column.get("type") == "date" and isinstance(value, str):
        return human_age(value)
    return value


def columns_of(crd_columns: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if crd_columns is None:
        return [NAME_COLUMN, AGE_COLUMN]
    cols = [NAME_COLUMN]
    for column in crd_columns:
        cols.append({"name": column["name"], "type": column.get("type", "string"), "format": column.get("format", ""),
                     "description": column.get("description", ""), "priority": column.get("priority", 0),
                     "jsonPath": column["jsonPath"]})
    return cols


def to_table(objects: list[dict[str, Any]], crd_columns: list[dict[str, Any]] | None, resource_version: str,
             include_object: str | None) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects``."""
    cols = columns_of(crd_columns)
    rows = []
    for obj in objects:
        cells = [obj["metadata"]["name"]] + [_cell(obj, c) for c in cols[1:]]
        if include_object == "Object":
            embedded: dict[str, Any] = obj
        elif include_object == "None":
            embedded = {}
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        row: dict[str, Any] = {"cells": cells}
        if embedded:
            row["object"] = embedded
        rows.append(row)
    definitions = [{k: v for k, v in c.items() if k != "jsonPath"} for c in cols]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
