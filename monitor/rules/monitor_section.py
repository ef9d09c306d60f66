"""The run config's ``monitor:`` section: rules, params, key paths, severities, old knobs.

Unknown keys under ``monitor`` are errors naming their path (a typo must never pass
silently); the rest of the trainer YAML may hold anything. ``monitor.NAME: value`` for a
param NAME keeps the old knobs (``monitor.batch_for``) working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitor.rules.errors import RuleError, problem

_SECTIONS = ("rules", "params", "keys", "severity")
Loc = tuple[str | int, ...]


@dataclass
class MonitorSection:
    """The parsed section; ``param_values`` maps param -> (value, loc it came from)."""

    rules: list[dict[str, Any]] = field(default_factory=list)
    param_values: dict[str, tuple[Any, Loc]] = field(default_factory=dict)
    keys: dict[str, list[str]] = field(default_factory=dict)
    severity: dict[str, str] = field(default_factory=dict)


def parse_monitor_section(section: Any, param_names: tuple[str, ...]) -> MonitorSection:
    """Validate the shape of ``monitor:``; RuleError lists every bad key with its path."""
    out, errors = MonitorSection(), []
    if section is None:
        return out
    if not isinstance(section, dict):
        raise RuleError([problem(["monitor"], "dict_type", "must be a mapping")])
    for key, value in section.items():
        loc: Loc = ("monitor", str(key))
        if key in param_names:
            if value is not None:
                out.param_values[key] = (value, loc)
        elif key == "rules":
            out.rules = _rules(value, loc, errors)
        elif key == "params":
            _params(value, loc, param_names, out, errors)
        elif key == "keys":
            out.keys = _keys(value, loc, param_names, errors)
        elif key == "severity":
            out.severity = _severity(value, loc, errors)
        else:
            errors.append(problem(loc, "unknown_key", f"unknown key; allowed: {list(_SECTIONS)} or a param name"))
    if errors:
        raise RuleError(errors)
    return out


def _rules(value: Any, loc: Loc, errors: list) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        errors.append(problem(loc, "list_type", "must be a list of rules"))
        return []
    rules = []
    for index, rule in enumerate(value):
        if not isinstance(rule, dict):
            errors.append(problem([*loc, index], "dict_type", "a rule must be a mapping"))
        elif not isinstance(rule.get("name"), str):
            errors.append(problem([*loc, index, "name"], "missing", "a rule needs a name"))
        else:
            rules.append(rule)
    return rules


def _params(value: Any, loc: Loc, names: tuple[str, ...], out: MonitorSection, errors: list) -> None:
    if not isinstance(value, dict):
        errors.append(problem(loc, "dict_type", "must be a mapping of param name to value"))
        return
    for name, item in value.items():
        if name not in names:
            errors.append(problem([*loc, str(name)], "unknown_param", "names no param"))
        elif item is not None:
            out.param_values[name] = (item, (*loc, name))


def _keys(value: Any, loc: Loc, names: tuple[str, ...], errors: list) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        errors.append(problem(loc, "dict_type", "must be a mapping of param name to key paths"))
        return {}
    keys = {}
    for name, paths in value.items():
        if name not in names:
            errors.append(problem([*loc, str(name)], "unknown_param", "names no param"))
        elif not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            errors.append(problem([*loc, name], "list_type", "must be a list of dotted key paths"))
        else:
            keys[name] = paths
    return keys


def _severity(value: Any, loc: Loc, errors: list) -> dict[str, str]:
    if not isinstance(value, dict):
        errors.append(problem(loc, "dict_type", "must be a mapping of rule name to 'warning' or 'pause'"))
        return {}
    bad = [name for name, sev in value.items() if sev not in ("warning", "pause")]
    for name in bad:
        errors.append(problem([*loc, str(name)], "literal_error", "must be 'warning' or 'pause'"))
    return {str(name): sev for name, sev in value.items() if name not in bad}
