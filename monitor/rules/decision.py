"""The trainer's question, answered: pause or continue meta-escalation, and why.

Only FIRING rules of severity ``pause`` pause the run (pending ones are still noise);
firing warnings are listed but never pause. Every rank has its own states and the worst
rank decides. Before the configured escalation start epoch the answer is always
``continue``, but firing pause rules are still reported (under ``warnings``).
If the current epoch is unknown the gate is treated as open (the safe side: pause).
The gate reads ``for_epoch`` when given: the epoch the trainer asks to escalate in
(issue 18.9), where ``current_epoch`` is only the last epoch reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from monitor.floats import encode_tree
from monitor.rules.ruleset import RuleSet
from monitor.rules.types import RuleState

# Added whenever the decision is pause; other remedies come from each rule's ``actions``.
HOLD = {"action": "hold_meta_escalation"}


@dataclass
class Decision:
    """What the trainer gets back; ``to_dict`` is JSON-safe (NaN spelled as a string)."""

    decision: Literal["continue", "pause"]
    health: Literal["ok", "warning", "paused"]
    reasons: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None
    current_epoch: int | None = None
    current_step: int | None = None
    for_epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the API, with non-finite floats encoded."""
        return encode_tree(asdict(self))


def decide(
    states: Iterable[RuleState],
    ruleset: RuleSet,
    current_epoch: int | None,
    current_step: int | None,
    escalation_start_epoch: int | None,
    for_epoch: int | None = None,
) -> Decision:
    """Fold rule states into one decision; usually ``escalation_start_epoch=ruleset.escalation_start_epoch``.

    States of rules the run no longer has (disabled, renamed) are left out.
    """
    firing: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for state in states:
        if state.rule not in ruleset.by_name or state.status == "ok":
            continue
        (firing if state.status == "firing" else pending).append(_reason(state, ruleset))
    firing.sort(key=_order)
    pending.sort(key=_order)
    asked = current_epoch if for_epoch is None else for_epoch
    gated = escalation_start_epoch is not None and asked is not None and asked < escalation_start_epoch
    blocking = [] if gated else [r for r in firing if r["severity"] == "pause"]
    warnings = firing if gated else [r for r in firing if r["severity"] != "pause"]
    verdict: Literal["continue", "pause"] = "pause" if blocking else "continue"
    health: Literal["ok", "warning", "paused"] = "paused" if blocking else ("warning" if warnings else "ok")
    notes = []
    if gated:
        notes.append(f"meta-escalation starts at epoch {escalation_start_epoch}; rules are still evaluated")
    if not ruleset.escalation_enabled:
        notes.append("the trainer's config disables meta-escalation (training.meta_escalation.enabled: false)")
    note = "; ".join(notes) or None
    return Decision(
        decision=verdict,
        health=health,
        reasons=blocking,
        warnings=warnings,
        pending=pending,
        actions=_actions(firing, ruleset, pause=bool(blocking)),
        note=note,
        current_epoch=current_epoch,
        current_step=current_step,
        for_epoch=asked,
    )


def _reason(state: RuleState, ruleset: RuleSet) -> dict[str, Any]:
    """One state as a reason row, naming the metric the rule actually read."""
    rule = ruleset.by_name[state.rule]
    metric = state.memory.get("metric") or rule.metric
    return {
        "rule": state.rule,
        "metric": metric,
        "value": state.value,
        "threshold": state.threshold,
        "since_step": state.since_step,
        "since_epoch": state.since_epoch,
        "rank": state.rank,
        "severity": rule.severity,
        "status": state.status,
    }


def _order(reason: dict[str, Any]) -> tuple:
    """Oldest breach first, then by rule and rank, so output is deterministic."""
    since_epoch = reason["since_epoch"] if reason["since_epoch"] is not None else -1
    since_step = reason["since_step"] if reason["since_step"] is not None else -1
    return (since_epoch, since_step, reason["rule"], reason["rank"])


def _actions(firing: list[dict[str, Any]], ruleset: RuleSet, pause: bool) -> list[dict[str, Any]]:
    """Deduplicated remedies, each naming the rules that call for it."""
    by_action: dict[str, dict[str, Any]] = {}
    for reason in firing:
        for remedy in ruleset.by_name[reason["rule"]].actions:
            entry = by_action.setdefault(remedy["action"], {**remedy, "because": []})
            if reason["rule"] not in entry["because"]:
                entry["because"].append(reason["rule"])
    if pause:
        because = sorted({r["rule"] for r in firing if r["severity"] == "pause"})
        by_action[HOLD["action"]] = {**HOLD, "because": because}
    return list(by_action.values())
