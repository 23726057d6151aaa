"""A small JSON Schema validator for tool arguments: a fixed subset, checked before any call.

Supported keywords: ``type`` (``object``, ``string``, ``integer``, ``number``,
``boolean``), ``properties``, ``required``, ``additionalProperties: false``, ``enum``
(strings), ``minLength``, ``maxLength``, ``pattern`` (strings), ``minimum``, ``maximum``
(numbers) and ``description``. Objects are flat: a property is a string, integer, number
or boolean. Any other keyword is an error when the tool is registered, so a schema never
promises a check that is not made. Numbers must be finite (no NaN or infinity), booleans
are not integers, and a string property without ``maxLength`` gets :data:`MAX_STRING`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tinyllm.errors import ConfigError

MAX_STRING = 4096
SCALARS = ("string", "integer", "number", "boolean")
OBJECT_KEYS = {"type", "properties", "required", "additionalProperties", "description"}
SCALAR_KEYS = {
    "type",
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "description",
}


def check_schema(schema: Any, where: str) -> None:
    """Reject a tool's argument schema outside the supported subset, naming the keyword."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ConfigError(f"{where}: a tool's parameters must be a JSON Schema of type object")
    unknown = set(schema) - OBJECT_KEYS
    if unknown:
        raise ConfigError(f"{where}: unsupported schema keyword {sorted(unknown)[0]!r}")
    if schema.get("additionalProperties", False) is not False:
        raise ConfigError(f"{where}: additionalProperties must be false (or left out)")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict) or not properties:
        raise ConfigError(f"{where}: the schema needs at least one property")
    for name, prop in properties.items():
        at = f"{where}: property {name!r}"
        if not isinstance(prop, dict) or prop.get("type") not in SCALARS:
            raise ConfigError(f"{at}: type must be one of {SCALARS}")
        extra = set(prop) - SCALAR_KEYS
        if extra:
            raise ConfigError(f"{at}: unsupported schema keyword {sorted(extra)[0]!r}")
        if "enum" in prop and not (
            prop["type"] == "string" and all(isinstance(v, str) for v in prop["enum"])
        ):
            raise ConfigError(f"{at}: enum is supported for strings only")
        if "pattern" in prop:
            try:
                re.compile(prop["pattern"])
            except (re.error, TypeError) as e:
                raise ConfigError(f"{at}: pattern is not a regular expression ({e})") from e
    required = schema.get("required", [])
    missing = [r for r in required if r not in properties]
    if missing:
        raise ConfigError(f"{where}: required property {missing[0]!r} is not in properties")


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)


def _scalar_error(name: str, prop: dict[str, Any], value: Any) -> str | None:
    kind = prop["type"]
    if not _type_ok(kind, value):
        return f"{name!r} must be a {kind}, got {type(value).__name__}"
    if kind in ("integer", "number"):
        if isinstance(value, float) and not math.isfinite(value):
            return f"{name!r} must be a finite number"
        if "minimum" in prop and value < prop["minimum"]:
            return f"{name!r} must be >= {prop['minimum']}"
        if "maximum" in prop and value > prop["maximum"]:
            return f"{name!r} must be <= {prop['maximum']}"
    if kind == "string":
        limit = prop.get("maxLength", MAX_STRING)
        if len(value) > limit:
            return f"{name!r} has {len(value)} characters (max {limit})"
        if len(value) < prop.get("minLength", 0):
            return f"{name!r} needs at least {prop['minLength']} characters"
        if "enum" in prop and value not in prop["enum"]:
            return f"{name!r} must be one of {prop['enum']}"
        if "pattern" in prop and not re.search(prop["pattern"], value):
            return f"{name!r} does not match {prop['pattern']!r}"
    return None


def validation_error(schema: dict[str, Any], arguments: Any) -> str | None:
    """Why ``arguments`` break ``schema`` (a checked schema), or None when they fit."""
    if not isinstance(arguments, dict):
        return f"the arguments must be a JSON object, got {type(arguments).__name__}"
    properties = schema["properties"]
    extra = [k for k in arguments if k not in properties]
    if extra:
        return f"unexpected argument {str(extra[0])[:40]!r}"
    for name in schema.get("required", []):
        if name not in arguments:
            return f"missing required argument {name!r}"
    for name, value in arguments.items():
        error = _scalar_error(name, properties[name], value)
        if error:
            return error
    return None
