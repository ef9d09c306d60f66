"""Errors of rules files and run configs: a list of ``{type, loc, msg}``, never the input.

The API prefixes ``loc`` with ``["body", "config"]`` and answers 422; the CLI prints one
line per error. Messages never repeat the offending value (it may be a secret).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

Loc = Sequence[str | int]


def problem(loc: Loc, kind: str, msg: str) -> dict[str, Any]:
    """One error entry."""
    return {"type": kind, "loc": list(loc), "msg": msg}


class RuleError(ValueError):
    """Invalid rules or params; ``errors`` locate every bad field from the config's root."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors))

    def prefixed(self, prefix: Loc) -> list[dict[str, Any]]:
        """The errors with ``prefix`` put in front of each loc (e.g. body, config)."""
        return [{**error, "loc": [*prefix, *error["loc"]]} for error in self.errors]


_UNION_TAGS = {"float", "int", "str", "bool", "list", "dict", "tuple", "none", "ParamRef", "KeyedValue", "Action"}


def _field_path(loc: Sequence[str | int]) -> list[str | int]:
    """Pydantic's loc without union-member tags (``above.float``, ``above.ParamRef`` -> ``above``)."""
    return [part for part in loc if isinstance(part, int)
            or not (part in _UNION_TAGS or "[" in part or part.startswith(("constrained-", "function-")))]


def from_validation(exc: ValidationError, prefix: Loc) -> list[dict[str, Any]]:
    """Pydantic's errors as entries under ``prefix`` (``input`` and ``ctx`` dropped), one per field."""
    out, seen = [], set()
    for error in exc.errors():
        loc = [*prefix, *_field_path(error["loc"])]
        key = tuple(str(part) for part in loc)
        if key not in seen:
            seen.add(key)
            out.append(problem(loc, error["type"], error["msg"]))
    return out
