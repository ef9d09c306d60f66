"""The effective rules of a run as plain JSON: what each reads, its thresholds and their source.

Serves ``GET /api/v1/runs/{id}/rules`` and the run page's rules table, so a person sees
which trainer key set each threshold and which are the shipped defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from monitor.floats import encode_tree
from monitor.rules.ruleset import RuleSet
from monitor.rules.types import RuleState


def param_refs(tree: Any) -> list[str]:
    """Param names a rule spec refers to, in order of appearance, each once."""
    found: list[str] = []
    if isinstance(tree, dict):
        if isinstance(tree.get("param"), str) and tree["param"] not in found:
            found.append(tree["param"])
        for value in tree.values():
            found += [name for name in param_refs(value) if name not in found]
    elif isinstance(tree, list):
        for value in tree:
            found += [name for name in param_refs(value) if name not in found]
    return found


def param_source(ruleset: RuleSet, name: str) -> dict[str, Any]:
    """A param's value, where it came from (a config key, or 'default'), and its phases."""
    report = ruleset.report
    value = ruleset.params[name]
    used = report["used"].get(name)
    return {"param": name, "value": value.value, "source": used["key"] if used else "default",
            "phases": report["phases"].get(name, [])}


def _state_row(state: RuleState, definition_id: str) -> dict[str, Any]:
    return {"rank": state.rank, "status": state.status, "value": state.value, "threshold": state.threshold,
            "metric": state.memory.get("metric"), "since_step": state.since_step, "since_epoch": state.since_epoch,
            "last_step": state.last_step, "last_epoch": state.last_epoch,
            "current_definition": state.definition_id in (None, definition_id), "note": state.memory.get("note")}


def describe(ruleset: RuleSet, states: Iterable[RuleState] = ()) -> dict[str, Any]:
    """Every effective rule with its thresholds and per-rank states (JSON-safe)."""
    by_rule: dict[str, list[RuleState]] = {}
    for state in states:
        by_rule.setdefault(state.rule, []).append(state)
    rules = []
    for rule in ruleset.rules:
        spec = {key: value for key, value in rule.spec.items() if value not in (None, [], {})}
        rules.append({
            "name": rule.name, "kind": rule.kind, "severity": rule.severity, "metric": rule.metric,
            "detector": rule.detector_name, "for": rule.span.for_count, "resolve": rule.span.resolve_count,
            "keep_firing_for": rule.span.keep_firing_for, "digest": rule.definition_id, "spec": spec,
            "thresholds": [param_source(ruleset, name) for name in param_refs(rule.spec)],
            "labels": rule.labels, "annotations": rule.annotations, "actions": list(rule.actions),
            "states": [_state_row(s, rule.definition_id) for s in sorted(by_rule.pop(rule.name, []), key=lambda s: s.rank)],
        })
    inactive = sorted(by_rule)
    return encode_tree({"rules": rules, "inactive_rules_with_state": inactive, "config_report": ruleset.report})
