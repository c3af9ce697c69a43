"""Structural OpenAPI v3 schema handling for custom resources: defaulting, pruning, validation.

Mirrors what the API server does with a CRD's ``openAPIV3Schema``: unknown fields are pruned
(unless ``x-kubernetes-preserve-unknown-fields``), ``default`` values are filled in, and values are
checked for type, enum, required, bounds, lengths, patterns and item counts. Errors carry the field
path in the API server's format, e.g. ``spec.replicas: Invalid value: -1: ... greater than or equal to 0``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float),
}


@dataclass(frozen=True)
class FieldError:
    """One invalid field: its dotted path, the API server's reason and a message."""

    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueTypeInvalid
    message: str


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | dict | list) else repr(value).lower() \
        if isinstance(value, bool) else str(value)


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    if expected == "number" and isinstance(value, float) and value != value:  # NaN
        return False
    return isinstance(value, _TYPES.get(expected, (object,)))


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill ``default`` values of absent object properties, recursively (returns a new value)."""
    if isinstance(value, dict) and schema.get("properties"):
        out = dict(value)
        for key, sub in schema["properties"].items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(out[key], sub)
        return out
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: apply_defaults(v, schema["additionalProperties"]) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def prune(value: Any, schema: dict[str, Any], *, root: bool = False) -> Any:
    """Drop fields the structural schema does not declare (returns a new value)."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource") or root:
            keep = {"apiVersion", "kind", "metadata"}
        else:
            keep = set()
        props: dict[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        out: dict[str, Any] = {}
        for key, sub in value.items():
            if key == "metadata" and "metadata" in keep:
                out[key] = sub  # object metadata is the API server's business, never pruned here
            elif key in props:
                out[key] = prune(sub, props[key])
            elif isinstance(additional, dict):
                out[key] = prune(sub, additional)
            elif additional is True or schema.get("x-kubernetes-preserve-unknown-fields") or key in keep:
                out[key] = sub
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return value


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[FieldError]:
    """Validate a value against a structural schema; returns every error found."""
    where = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return []
        return [FieldError(where, "FieldValueTypeInvalid",
                           f'{where}: Invalid value: "null": {where} in body must be of type '
                           f'{schema.get("type", "object")}: "null"')]
    if not _type_ok(value, schema):
        expected = "integer or string" if schema.get("x-kubernetes-int-or-string") else schema.get("type")
        actual = "null" if value is None else {bool: "boolean", int: "integer", float: "number", str: "string",
                                               list: "array", dict: "object"}.get(type(value), type(value).__name__)
        return [FieldError(where, "FieldValueTypeInvalid",
                           f'{where}: Invalid value: "{actual}": {where} in body must be of type {expected}: '
                           f'"{actual}"')]
    errors: list[FieldError] = []
    errors += _check_scalar(value, schema, where)
    for combinator in ("allOf", "anyOf", "oneOf", "not"):
        if combinator in schema:
            errors += _check_combinator(value, schema, combinator, path, where)
    if isinstance(value, dict):
        errors += _check_object(value, schema, path, where)
    elif isinstance(value, list):
        errors += _check_array(value, schema, path, where)
    if schema.get("x-kubernetes-validations") and not errors:  # the API server runs CEL on valid values only
        errors += _check_cel(value, schema["x-kubernetes-validations"], where)
    return errors


def _check_cel(value: Any, rules: list[dict[str, Any]], where: str) -> list[FieldError]:
    """``x-kubernetes-validations``: each rule is a CEL expression over ``self`` that must be true.

    Evaluated with cel-python (the core language: has, size, all, exists, map, filter, in); a rule it
    cannot compile is reported, never silently passed.
    """
    import celpy

    env = celpy.Environment()
    errors: list[FieldError] = []
    for rule in rules:
        try:
            program = env.program(env.compile(rule["rule"]))
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except Exception as exc:  # noqa: BLE001 - a broken rule is a test failure with the rule named
            errors.append(FieldError(where, "InternalError", f"{where}: CEL rule {rule['rule']!r} failed: {exc}"))
            continue
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            kind = "object" if isinstance(value, dict) else "array" if isinstance(value, list) else _show(value)
            errors.append(FieldError(where, "FieldValueInvalid", f'{where}: Invalid value: "{kind}": {message}'))
    return errors


def _invalid(where: str, value: Any, detail: str, reason: str = "FieldValueInvalid") -> FieldError:
    return FieldError(where, reason, f"{where}: Invalid value: {_show(value)}: {where} in body {detail}")


def _check_scalar(value: Any, schema: dict[str, Any], where: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(_show(v) for v in schema["enum"])
        errors.append(FieldError(where, "FieldValueNotSupported",
                                 f"{where}: Unsupported value: {_show(value)}: supported values: {allowed}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            low = schema["minimum"]
            if value < low or (schema.get("exclusiveMinimum") is True and value == low):
                op = "greater than" if schema.get("exclusiveMinimum") is True else "greater than or equal to"
                errors.append(_invalid(where, value, f"should be {op} {low}"))
        if "maximum" in schema:
            high = schema["maximum"]
            if value > high or (schema.get("exclusiveMaximum") is True and value == high):
                op = "less than" if schema.get("exclusiveMaximum") is True else "less than or equal to"
                errors.append(_invalid(where, value, f"should be {op} {high}"))
        if "multipleOf" in schema and schema["multipleOf"] and (value / schema["multipleOf"]) % 1:
            errors.append(_invalid(where, value, f"should be a multiple of {schema['multipleOf']}"))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(_invalid(where, value, f"should be at least {schema['minLength']} chars long"))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(FieldError(where, "FieldValueTooLong",
                                     f"{where}: Too long: may not be longer than {schema['maxLength']}"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(_invalid(where, value, f"should match '{schema['pattern']}'"))
    return errors


def _check_object(value: dict[str, Any], schema: dict[str, Any], path: str, where: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for key in schema.get("required") or []:
        if key not in value:
            sub = f"{path}.{key}" if path else key
            errors.append(FieldError(sub, "FieldValueRequired", f"{sub}: Required value"))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(_invalid(where, value, f"should have at least {schema['minProperties']} properties"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(FieldError(where, "FieldValueTooMany",
                                 f"{where}: Too many: {len(value)}: must have at most "
                                 f"{schema['maxProperties']} items"))
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, sub_value in value.items():
        sub = f"{path}.{key}" if path else key
        if key in props:
            errors += validate(sub_value, props[key], sub)
        elif isinstance(additional, dict):
            errors += validate(sub_value, additional, f"{path}[{key}]" if path else key)
    return errors


def _check_array(value: list[Any], schema: dict[str, Any], path: str, where: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(_invalid(where, value, f"should have at least {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(FieldError(where, "FieldValueTooMany",
                                 f"{where}: Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    if schema.get("uniqueItems") or schema.get("x-kubernetes-list-type") == "set":
        seen: list[Any] = []
        for item in value:
            if item in seen:
                errors.append(FieldError(where, "FieldValueDuplicate", f"{where}: Duplicate value: {_show(item)}"))
            seen.append(item)
    if schema.get("x-kubernetes-list-type") == "map":  # items are keyed by x-kubernetes-list-map-keys
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[dict[str, Any]] = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                key = {k: item.get(k) for k in keys}
                if key in seen_keys:
                    errors.append(FieldError(f"{path}[{i}]", "FieldValueDuplicate",
                                             f"{path}[{i}]: Duplicate value: {_show(key)}"))
                seen_keys.append(key)
    if isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


def _check_combinator(value: Any, schema: dict[str, Any], name: str, path: str, where: str) -> list[FieldError]:
    if name == "not":
        if not validate(value, {**schema["not"], "nullable": True}, path):
            return [_invalid(where, value, "must not validate the schema (not)")]
        return []
    branches = [validate(value, {**sub, "nullable": True}, path) for sub in schema[name]]
    passed = sum(1 for errs in branches if not errs)
    if name == "allOf":
        return [e for errs in branches for e in errs]
    if name == "anyOf" and passed == 0:
        return [_invalid(where, value, "must validate at least one schema (anyOf)")] + branches[0]
    if name == "oneOf" and passed != 1:
        return [_invalid(where, value, f"must validate one and only one schema (oneOf); {passed} matched")]
    return []


def validate_object(obj: dict[str, Any], schema: dict[str, Any]) -> list[FieldError]:
    """Validate a whole custom resource; ``metadata`` is checked by the API server itself, not here."""
    body = {k: v for k, v in obj.items() if k != "metadata"}
    local = {**schema, "properties": {k: v for k, v in (schema.get("properties") or {}).items() if k != "metadata"}}
    local.pop("required", None)
    root_rules = local.pop("x-kubernetes-validations", None)
    required = [k for k in schema.get("required") or [] if k != "metadata"]
    errors = [FieldError(k, "FieldValueRequired", f"{k}: Required value") for k in required if k not in body]
    errors += validate(body, local, "")
    if root_rules and not errors:  # root CEL rules see metadata.name and metadata.generateName, as the API's do
        meta = obj.get("metadata") or {}
        visible = {k: meta[k] for k in ("name", "generateName") if k in meta}
        errors += _check_cel({**body, "metadata": visible}, root_rules, "<root>")
    return errors


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of fields the schema does not declare (what strict field validation rejects)."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("additionalProperties") is True:
            return []
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        found: list[str] = []
        for key, sub in value.items():
            where = f"{path}.{key}" if path else key
            if path == "" and key == "metadata":
                continue  # object metadata is the API server's own schema (ObjectMeta), not the CRD's
            if key in props:
                found += unknown_fields(sub, props[key], where)
            elif isinstance(additional, dict):
                found += unknown_fields(sub, additional, where)
            elif not (path == "" and key in ("apiVersion", "kind", "metadata")):
                found.append(where)
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [p for i, item in enumerate(value) for p in unknown_fields(item, schema["items"], f"{path}[{i}]")]
    return []
