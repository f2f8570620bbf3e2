"""Small coercions of OTLP attribute values (any JSON-ish value) to contract types."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any


def first(*values: Any) -> Any:
    """The first value that is not None, ``""`` or ``[]``."""
    for v in values:
        if v is not None and v not in ("", []):
            return v
    return None


INT64_MAX = 2**63 - 1


def as_int(v: Any) -> int | None:
    """An integer that fits the contract's int64, or None for booleans, non-numbers,
    non-finite numbers and values no count can reach (10^30 tokens)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if -INT64_MAX <= v <= INT64_MAX else None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(f) if math.isfinite(f) and abs(f) < INT64_MAX else None


def as_float(v: Any) -> float | None:
    """A finite float, or None."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def as_bool(v: Any) -> bool | None:
    """A boolean from a bool, a number or ``true/false/1/0/yes/no``; else None."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("false", "0", "no"):
        return False
    return None


def as_json(v: Any) -> Any:
    """A string parsed as JSON (None if it is not JSON); any other value as it is."""
    if isinstance(v, str):
        try:
            return json.loads(v)
        except (json.JSONDecodeError, RecursionError):
            return None
    return v


def as_list(v: Any) -> list[Any] | None:
    """A list from a list, a JSON array string or a comma-separated string."""
    v = as_json(v) if isinstance(v, str) and v.lstrip().startswith("[") else v
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return None if v is None else [v]


def str_list(value: Any, clean: Callable[[Any], Any]) -> list[str] | None:
    """A list of cleaned strings, or None when empty."""
    items = as_list(value)
    if not items:
        return None
    return [clean(str(x)) for x in items]


def coerce(kind: str, value: Any, clean: Callable[[Any], Any],
           clean_json: Callable[[Any], Any]) -> Any:
    """A ``tracehouse.<key>`` value in the attribute key's contract type, or None.

    ``clean`` masks a string; ``clean_json`` masks a whole JSON document (values and keys).
    """
    if kind == "str":
        return clean(value) if not isinstance(value, list | dict) else None
    if kind == "int":
        return as_int(value)
    if kind == "num":
        return as_float(value)
    if kind == "bool":
        return as_bool(value)
    if kind == "list_str":
        return str_list(value, clean)
    if kind == "list_num":
        items = as_list(value)
        return [f for f in (as_float(x) for x in items or []) if f is not None] or None
    if kind in ("obj", "list_obj"):
        parsed = as_json(value)
        want = dict if kind == "obj" else list
        return clean_json(parsed) if isinstance(parsed, want) else None
    return None
