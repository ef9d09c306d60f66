"""Rule readings as tiny expressions, compiled once into plain closures.

Grammar: ``TERM`` or ``TERM / TERM``; TERM is a built-in reading, ``extra.NAME``,
``epoch.NAME``, ``epoch.extra.NAME``, ``abs(TERM)``, or ``max|min|mean(epoch.extra.NAME)``
of an epoch vector. A term the reading lacks is None (no observation); a division by 0
is NaN (unhealthy for a bound). No eval(): the grammar is closed, so a rules file can
never run code.
"""

from __future__ import annotations

import math
import re
from operator import attrgetter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Literal

from monitor.rules.types import BatchReading, EpochReading

Kind = Literal["batch", "epoch"]
Getter = Callable[[Any], "float | None"]

BATCH_READINGS = tuple(f.name for f in fields(BatchReading) if f.name not in ("step", "epoch", "rank", "extra"))
EPOCH_READINGS = tuple(f.name for f in fields(EpochReading) if f.name not in ("epoch", "rank", "extra"))
_NAME = r"[A-Za-z_][A-Za-z0-9_.:/-]{0,99}"
_CALL = re.compile(r"^(abs|max|min|mean)\((.*)\)$")
_VECTOR_FUNCS: dict[str, Callable[[list[float]], float]] = {
    "max": max, "min": min, "mean": lambda values: sum(values) / len(values),
}


class ExpressionError(ValueError):
    """A reading expression that does not parse; the message names the bad part."""


@dataclass(frozen=True)
class Expression:
    """A compiled reading: its text (the metric name events carry), kind and getter."""

    text: str
    kind: Kind
    get: Getter
    terms: tuple[str, ...]


def compile_expression(text: str) -> Expression:
    """Parse ``text``; ExpressionError says what is wrong (never evaluates anything)."""
    source = " ".join(text.split())
    parts = _split_division(source)
    compiled = [_term(part.strip()) for part in parts]
    kinds = {kind for kind, _, _ in compiled}
    if len(kinds) != 1:
        raise ExpressionError("mixes batch and epoch readings; a rule reads one or the other")
    kind = kinds.pop()
    terms = tuple(name for _, _, names in compiled for name in names)
    if len(compiled) == 1:
        return Expression(source, kind, compiled[0][1], terms)
    return Expression(source, kind, _divide(compiled[0][1], compiled[1][1]), terms)


def _split_division(source: str) -> list[str]:
    """Top-level ``/`` splits numerator and denominator (at most one division)."""
    depth, cuts = 0, []
    for index, char in enumerate(source):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ExpressionError("unbalanced parentheses")
        if char == "/" and depth == 0:
            cuts.append(index)
    if depth:
        raise ExpressionError("unbalanced parentheses")
    if len(cuts) > 1:
        raise ExpressionError("at most one division (TERM / TERM)")
    if not cuts:
        return [source]
    return [source[: cuts[0]], source[cuts[0] + 1:]]


def _term(text: str) -> tuple[Kind, Getter, tuple[str, ...]]:
    """One TERM: a name or a function of a TERM."""
    call = _CALL.match(text)
    if call:
        func, inner = call.group(1), call.group(2).strip()
        if func == "abs":
            kind, get, names = _term(inner)
            return kind, _abs(get), names
        if not inner.startswith("epoch.extra."):
            raise ExpressionError(f"{func}() takes an epoch vector, epoch.extra.NAME")
        return "epoch", _vector(inner[len("epoch.extra."):], _VECTOR_FUNCS[func]), (inner,)
    if not re.fullmatch(_NAME, text):
        raise ExpressionError(f"not a reading: use a built-in reading, extra.NAME, epoch.NAME or epoch.extra.NAME")
    return _name(text)


def _name(text: str) -> tuple[Kind, Getter, tuple[str, ...]]:
    """Resolve a dotted name to a getter over BatchReading or EpochReading."""
    if text.startswith("epoch.extra."):
        return "epoch", _extra_scalar(text[len("epoch.extra."):]), (text,)
    if text.startswith("epoch."):
        field = text[len("epoch."):]
        if field not in EPOCH_READINGS:
            raise ExpressionError(f"unknown epoch reading; known: {list(EPOCH_READINGS)} or epoch.extra.NAME")
        return "epoch", _attribute(field), (text,)
    if text.startswith("extra."):
        return "batch", _extra_scalar(text[len("extra."):]), (text,)
    if text not in BATCH_READINGS:
        raise ExpressionError(f"unknown reading; known: {list(BATCH_READINGS)} or extra.NAME")
    return "batch", _attribute(text), (text,)


def _attribute(field: str) -> Getter:
    """A C-level getter: readings are floats (or whole counts, which compare the same)."""
    return attrgetter(field)


def _extra_scalar(key: str) -> Getter:
    def get(reading: Any) -> float | None:
        extra = reading.extra
        value = None if extra is None else extra.get(key)
        if value is None or isinstance(value, (list, tuple)):
            return None
        return float(value)
    return get


def _vector(key: str, reduce: Callable[[list[float]], float]) -> Getter:
    def get(reading: Any) -> float | None:
        extra = reading.extra
        value = None if extra is None else extra.get(key)
        if value is None:
            return None
        values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
        if not values:
            return None
        return math.nan if any(math.isnan(v) for v in values) else reduce(values)
    return get


def _abs(inner: Getter) -> Getter:
    def get(reading: Any) -> float | None:
        value = inner(reading)
        return None if value is None else abs(value)
    return get


def _divide(numerator: Getter, denominator: Getter) -> Getter:
    def get(reading: Any) -> float | None:
        top, bottom = numerator(reading), denominator(reading)
        if top is None or bottom is None:
            return None
        if bottom == 0 or math.isnan(top) or math.isnan(bottom):
            return math.nan
        return top / bottom
    return get
