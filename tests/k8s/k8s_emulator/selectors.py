"""Label and field selectors as the Kubernetes API parses and applies them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_SET_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|!=|=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")


class SelectorError(ValueError):
    """A selector string that does not parse."""


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t for t in (t.strip() for t in terms) if t]


def parse_label_selector(text: str | None) -> Predicate:
    """Parse ``a=b,c!=d,e in (f,g),!h`` into a predicate over a labels mapping."""
    checks: list[Predicate] = []
    for term in _split_terms(text or ""):
        if m := _SET_RE.match(term):
            key, op, raw = m.group(1), m.group(2), m.group(3)
            values = frozenset(v.strip() for v in raw.split(",") if v.strip())
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := _EQ_RE.match(term):
            key, op, value = m.group(1), m.group(2), m.group(3)
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := _EXISTS_RE.match(term):
            negate, key = bool(m.group(1)), m.group(2)
            checks.append(lambda labels, k=key, n=negate: (k in labels) != n)
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")
    return lambda labels: all(check(labels) for check in checks)


def _field_value(obj: Mapping[str, Any], path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)


def parse_field_selector(text: str | None) -> Predicate:
    """Parse ``metadata.name=x,status.phase!=Failed`` into a predicate over whole objects."""
    checks: list[Predicate] = []
    for term in _split_terms(text or ""):
        m = _EQ_RE.match(term)
        if not m:
            raise SelectorError(f"invalid field selector: {term!r}")
        path, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            checks.append(lambda obj, p=path, v=value: (_field_value(obj, p) or "") != v)
        else:
            checks.append(lambda obj, p=path, v=value: (_field_value(obj, p) or "") == v)
    return lambda obj: all(check(obj) for check in checks)


def make_matcher(label_selector: str | None, field_selector: str | None) -> Predicate:
    """Combine both selectors into one predicate over whole objects."""
    labels_ok = parse_label_selector(label_selector)
    fields_ok = parse_field_selector(field_selector)

    def match(obj: Mapping[str, Any]) -> bool:
        return labels_ok(obj.get("metadata", {}).get("labels") or {}) and fields_ok(obj)

    return match
