"""Thresholds resolved from the trainer's own YAML, with a report of where each came from.

The trainer already states its limits (``model.hyperlora_max_norm``,
``training.meta_escalation.*``), so params list the key paths to look at, first hit wins.
Nothing is silently defaulted: the report says which key gave each value, which params
fell back to defaults, and which epoch-dependent phases (``late_phase``) apply.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from monitor.rules.errors import RuleError, problem
from monitor.rules.spec import KeyedValue, Phase, ParamSpec

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ParamValue:
    """A param's value, and from which epochs other values apply (sorted by epoch)."""

    value: float | bool | None
    phases: tuple[tuple[int, float], ...] = ()

    def at(self, epoch: int | None) -> Any:
        """The value in force at ``epoch`` (None: the base value)."""
        if not self.phases or epoch is None:
            return self.value
        index = bisect_right([start for start, _ in self.phases], epoch)
        return self.value if index == 0 else self.phases[index - 1][1]


@dataclass
class Resolution:
    """Resolved params plus the ``config_report`` parts about them."""

    values: dict[str, ParamValue] = field(default_factory=dict)
    used: dict[str, dict[str, Any]] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def lookup(config: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) for a dotted path; a non-mapping on the way counts as not found."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def first_hit(config: dict[str, Any], keys: list[str]) -> tuple[str | None, Any]:
    """The first key present with a non-null value (null means 'use the default')."""
    for key in keys:
        found, value = lookup(config, key)
        if found and value is not None:
            return key, value
    return None, None


def resolve_params(
    specs: dict[str, ParamSpec],
    config: dict[str, Any],
    overrides: dict[str, tuple[Any, Loc]],
    key_overrides: dict[str, list[str]],
) -> Resolution:
    """Resolve every param; RuleError lists every bad value with the config path it came from."""
    out, errors = Resolution(), []
    for name, spec in specs.items():
        keys = key_overrides.get(name, spec.keys)
        if name in overrides:
            raw, loc = overrides[name]
            source = ".".join(str(part) for part in loc)
        else:
            source, raw = first_hit(config, keys)
            loc = tuple(source.split(".")) if source else ("params", name, "default")
        if source is None:
            raw = spec.default
        value, error = _checked(spec, raw, loc)
        if error:
            errors.append(error)
            continue
        if source is None:
            out.defaults[name] = value
        else:
            out.used[name] = {"key": source, "value": value}
        phases = _phases(name, spec, config, out, errors)
        out.values[name] = ParamValue(value, phases)
    if errors:
        raise RuleError(errors)
    return out


def _checked(spec: ParamSpec, raw: Any, loc: Loc) -> tuple[Any, dict[str, Any] | None]:
    """Type and range check of one value; the error names ``loc`` and never repeats the value."""
    if raw is None:
        return None, None
    if spec.type == "bool":
        if not isinstance(raw, bool):
            return None, problem(loc, "bool_type", "must be true or false")
        return raw, None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None, problem(loc, "float_type", "must be a number")
    if spec.type == "integer" and not float(raw).is_integer():
        return None, problem(loc, "int_type", "must be a whole number")
    if not math.isfinite(raw):
        return None, problem(loc, "finite_number", "must be a finite number")
    check = spec.check
    if check is not None:
        for op, limit, ok in (("gt", check.gt, lambda v, l: v > l), ("ge", check.ge, lambda v, l: v >= l),
                              ("lt", check.lt, lambda v, l: v < l), ("le", check.le, lambda v, l: v <= l)):
            if limit is not None and not ok(raw, limit):
                words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}[op]
                return None, problem(loc, f"{op}_limit", f"must be {words} {limit}")
    return (int(raw) if spec.type == "integer" else float(raw)), None


def _keyed(config: dict[str, Any], item: Any) -> tuple[str | None, Any]:
    """A literal, or a value looked up from the config (else its default)."""
    if not isinstance(item, KeyedValue):
        return None, item
    key, value = first_hit(config, item.keys)
    return (key, value) if key is not None else (None, item.default)


def _phases(name: str, spec: ParamSpec, config: dict[str, Any], out: Resolution,
            errors: list[dict[str, Any]]) -> tuple[tuple[int, float], ...]:
    """Phases that are enabled and have both a start epoch and a value."""
    found: list[tuple[int, float]] = []
    for index, phase in enumerate(spec.phases):
        resolved = _phase(name, index, phase, spec, config, out, errors)
        if resolved is not None:
            found.append(resolved)
    return tuple(sorted(found))


def _phase(name: str, index: int, phase: Phase, spec: ParamSpec, config: dict[str, Any], out: Resolution,
           errors: list[dict[str, Any]]) -> tuple[int, float] | None:
    _, enabled = _keyed(config, phase.enabled)
    if enabled is not True:
        return None
    start_key, start = _keyed(config, phase.from_epoch)
    value_key, raw = first_hit(config, phase.keys) if phase.keys else (None, phase.value)
    if start is None or raw is None:
        out.notes.append(f"param {name}: phase {index} is enabled but lacks a start epoch or a value; not applied")
        return None
    value, error = _checked(spec, raw, tuple(value_key.split(".")) if value_key else ("params", name))
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        error = error or problem(tuple(start_key.split(".")) if start_key else ("params", name),
                                 "int_type", "phase start epoch must be a whole number >= 0")
    if error:
        errors.append(error)
        return None
    out.phases.setdefault(name, []).append({"from_epoch": start, "value": value, "key": value_key})
    return start, value
