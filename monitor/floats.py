"""Lossless float <-> JSON helpers: NaN and +-Infinity are data, not errors.

Strict JSON (and PostgreSQL's jsonb, and browsers) cannot carry NaN/Infinity, so
responses and JSON columns spell them as the strings "NaN", "Infinity", "-Infinity".
"""

from __future__ import annotations

import math
from typing import Any

NON_FINITE_SPELLINGS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float | None) -> float | str | None:
    """A JSON-safe spelling of ``value``."""
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: Any) -> float | None:
    """Inverse of :func:`encode_float`; accepts numbers and the three spellings."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in NON_FINITE_SPELLINGS:
            return NON_FINITE_SPELLINGS[value]
        return float(value)
    return float(value)


def encode_tree(obj: Any) -> Any:
    """Recursively make a dict/list structure JSON-safe (floats via :func:`encode_float`)."""
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, dict):
        return {key: encode_tree(val) for key, val in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_tree(val) for val in obj]
    return obj
