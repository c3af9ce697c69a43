"""Base class for every workload config model (torch-free, imported by the operator)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    """A config model: camelCase in YAML, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict:
        """The JSON-ready camelCase form (as it appears in a resource spec)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- problems with a field path
# A model validator that finds problems at several places raises ``problems(...)``: one line per
# problem, each ``@<path relative to the model>: <message>``; ``error_lines`` turns every error of a
# ValidationError into ``<full.path>: <message>`` lines (the CLI, the operator and the runners use it).
PATH_MARK = "@"


def problems(items: list[tuple[str, str]]) -> ValueError:
    """A ValueError carrying several ``(relative path, message)`` problems, one per line.

    Args:
        items: (path relative to the validated model, e.g. ``stages[2].input``; message) pairs.
    """
    return ValueError("\n".join(f"{PATH_MARK}{path}: {message}" for path, message in items))


def format_location(loc: tuple) -> str:
    """('spec', 'training', 'stages', 0, 'lr') -> 'spec.training.stages[0].lr'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path += ("." if path else "") + str(part)
    return path or "<document>"


def _join(base: str, rel: str) -> str:
    if base == "<document>":
        return rel
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def _error_message(error: dict) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown field (not in the schema)"
    if kind == "missing":
        return "required field is missing"
    if kind in ("value_error", "assertion_error"):
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error" and "input" in error:
        return f"{msg}, got {error['input']!r}"
    return msg


def error_lines(exc, prefix: tuple = ()) -> list[str]:
    """One ``path: message`` line per problem of a pydantic ``ValidationError`` (paths camelCase, as in YAML).

    Args:
        exc: the ValidationError.
        prefix: location of the validated model in the document, e.g. ``("spec", "pipeline")``.
    """
    by_path: dict[str, list[str]] = {}
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and _UNION_TAG.match(p)))
        base = format_location(tuple(prefix) + loc)
        message = _error_message(error)
        for line in message.split("\n"):
            if line.startswith(PATH_MARK) and ": " in line:
                rel, line = line[1:].split(": ", 1)
                path = _join(base, rel)
            else:
                path = base
            if line not in by_path.setdefault(path, []):
                by_path[path].append(line)
    # the members of a union each fail at the same path: one line, "a, or b"
    return [f"{path}: {', or '.join(messages)}" for path, messages in by_path.items()]


# pydantic's tags of union members and function validators inside a location, e.g. "constrained-int"
_UNION_TAG = re.compile(r"^(function-.*|.*\[.*|constrained-\w+|int|str|float|bool|none|dict|list)$")
