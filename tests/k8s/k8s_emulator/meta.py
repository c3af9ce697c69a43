"""Object metadata as the API server manages it: names, uid, timestamps, label syntax."""

from __future__ import annotations

import datetime
import random
import re
import string
import uuid
from typing import Any

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's alphabet (no vowels, no 0/1/3)


def now() -> str:
    """The current time in the API server's RFC 3339 form (seconds, ``Z``)."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    """A fresh object uid."""
    return str(uuid.uuid4())


def generate_name(prefix: str, rng: random.Random | None = None) -> str:
    """``generateName`` + 5 random characters, as the API server does."""
    rng = rng or random.Random()
    return prefix + "".join(rng.choice(_SUFFIX_ALPHABET) for _ in range(5))


def name_errors(name: Any, field: str = "metadata.name") -> list[str]:
    """Problems with an object name (DNS-1123 subdomain, at most 253 characters)."""
    if not isinstance(name, str) or not name:
        return [f"{field}: Required value: name or generateName is required"]
    problems = []
    if len(name) > 253:
        problems.append(f"{field}: Invalid value: {name!r}: must be no more than 253 characters")
    if not _DNS_SUBDOMAIN.match(name):
        problems.append(
            f"{field}: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")
    return problems


def label_errors(labels: Any, field: str = "metadata.labels") -> list[str]:
    """Problems with label keys and values (prefix/name syntax, 63-character values)."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [f"{field}: Invalid value: must be a map of strings"]
    problems: list[str] = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
            problems.append(f"{field}: Invalid value: {key!r}: prefix part must be a DNS-1123 subdomain")
        if not name or len(name) > 63 or not _LABEL_NAME.match(name):
            problems.append(f"{field}: Invalid value: {key!r}: name part must consist of alphanumeric characters, "
                            "'-', '_' or '.', at most 63 characters")
        if not isinstance(value, str):
            problems.append(f"{field}[{key}]: Invalid value: {value!r}: label values must be strings")
        elif len(value) > 63 or not _LABEL_VALUE.match(value):
            problems.append(f"{field}[{key}]: Invalid value: {value!r}: a valid label must be an empty string or "
                            "consist of alphanumeric characters, '-', '_' or '.', at most 63 characters")
    return problems


def annotation_errors(annotations: Any, field: str = "metadata.annotations") -> list[str]:
    """Problems with annotations (must be a map of strings)."""
    if annotations is None:
        return []
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        return [f"{field}: Invalid value: annotations must be a map of strings to strings"]
    return []


def without_volatile(obj: dict[str, Any]) -> dict[str, Any]:
    """The parts of an object whose change bumps ``metadata.generation`` (all but metadata and status)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def all_chars_ok(text: str) -> bool:
    """Whether a string only uses printable ASCII (used for header-safe messages)."""
    return all(c in string.printable for c in text)
