"""The generic alert lifecycle every rule shares: ok -> pending -> firing -> ok.

Modelled on Prometheus alerting rules: a breach must persist for ``for_count``
consecutive observations before it fires (one noisy batch never fires), and a firing
rule resolves only after ``resolve_count`` consecutive healthy observations (hysteresis,
so a rule hovering at its bound does not flap).

Observation policy (shared by all rules):

* a missing reading (``None``) is *no observation*: the rule returns ``None`` and the
  state does not change at all, neither towards firing nor towards resolving;
* a NaN reading of a bounded metric is a *breach*: NaN logits/norms/variances mean the
  model is already unhealthy, and comparisons with NaN would otherwise read as healthy.

Which readings a rule observes and how it judges them is data (``monitor.rules.spec``);
this module only owns the lifecycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitor.rules.detectors import Observation
from monitor.rules.types import RuleState, RuleTransition, Severity

__all__ = ["Observation", "Span", "above", "advance", "below"]


@dataclass(frozen=True)
class Span:
    """How many consecutive breaches fire a rule and healthy observations resolve it.

    ``keep_firing_for`` (Prometheus' name) keeps a firing rule firing for that many more
    healthy observations after the resolve span is met, so a recovering run does not flap.
    """

    for_count: int
    resolve_count: int
    keep_firing_for: int = 0


def above(value: float, bound: float) -> bool:
    """Breach test for 'must stay <= bound'; NaN counts as a breach."""
    return math.isnan(value) or value > bound


def below(value: float, bound: float) -> bool:
    """Breach test for 'must stay >= bound'; NaN counts as a breach."""
    return math.isnan(value) or value < bound


def advance(
    state: RuleState,
    obs: Observation | None,
    *,
    span: Span,
    severity: Severity,
    metric: str,
    step: int | None,
    epoch: int | None,
) -> RuleTransition | None:
    """Apply one observation to ``state`` in place; return the transition it caused, if any."""
    if obs is None:
        return None
    state.value, state.threshold = obs.value, obs.threshold
    if obs.breached:
        fired = _on_breach(state, span, step, epoch)
        kind = "fired" if fired else None
    else:
        kind = "resolved" if _on_healthy(state, span) else None
    if kind is None:
        return None
    return RuleTransition(
        rule=state.rule,
        rank=state.rank,
        kind=kind,
        severity=severity,
        metric=obs.metric or metric,
        value=obs.value,
        threshold=obs.threshold,
        step=step,
        epoch=epoch,
    )


def _on_breach(state: RuleState, span: Span, step: int | None, epoch: int | None) -> bool:
    """Count the breach; True when this one makes the rule fire."""
    if state.status == "ok":
        state.status = "pending"
        state.since_step, state.since_epoch = step, epoch
        state.breach_count = 0
    state.breach_count += 1
    state.stable_count = 0
    if state.status == "pending" and state.breach_count >= span.for_count:
        state.status = "firing"
        return True
    return False


def _on_healthy(state: RuleState, span: Span) -> bool:
    """Count the healthy reading; True when it resolves a firing rule."""
    if state.status == "pending":
        _reset(state)
    elif state.status == "firing":
        state.stable_count += 1
        if state.stable_count >= span.resolve_count + span.keep_firing_for:
            _reset(state)
            return True
    return False


def _reset(state: RuleState) -> None:
    """Back to ok: forget the breach episode (not the rule's memory)."""
    state.status = "ok"
    state.since_step = state.since_epoch = None
    state.breach_count = state.stable_count = 0
