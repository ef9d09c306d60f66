"""The shared ok -> pending -> firing -> ok lifecycle (Prometheus-style ``for`` spans)."""

from __future__ import annotations

import math

from monitor.rules.state_machine import Observation, Span, above, advance, below
from monitor.rules.types import RuleState

SPAN = Span(for_count=3, resolve_count=2)
BAD = Observation(9.0, 5.0, True)
GOOD = Observation(1.0, 5.0, False)


def step(state: RuleState, obs: Observation | None, at: int):
    return advance(state, obs, span=SPAN, severity="pause", metric="m", step=at, epoch=at // 10)


def test_breach_goes_pending_then_fires_after_for_count() -> None:
    state = RuleState(rule="r")
    assert step(state, BAD, 10) is None and state.status == "pending"
    assert step(state, BAD, 11) is None and state.status == "pending"
    fired = step(state, BAD, 12)
    assert fired is not None and fired.kind == "fired" and state.status == "firing"
    assert (fired.rule, fired.severity, fired.metric, fired.value, fired.threshold) == ("r", "pause", "m", 9.0, 5.0)
    assert (fired.step, fired.epoch) == (12, 1)
    assert (state.since_step, state.since_epoch) == (10, 1), "since = when the breach began"


def test_single_healthy_reading_while_pending_returns_to_ok() -> None:
    state = RuleState(rule="r")
    step(state, BAD, 1)
    step(state, BAD, 2)
    assert step(state, GOOD, 3) is None
    assert state.status == "ok" and state.breach_count == 0 and state.since_step is None
    step(state, BAD, 4)
    assert state.status == "pending" and state.breach_count == 1 and state.since_step == 4


def test_resolve_needs_resolve_count_consecutive_healthy() -> None:
    state = RuleState(rule="r")
    for at in range(3):
        step(state, BAD, at)
    assert step(state, GOOD, 3) is None and state.stable_count == 1
    assert step(state, BAD, 4) is None and state.stable_count == 0, "breach while firing resets"
    assert state.status == "firing" and state.since_step == 0
    assert step(state, GOOD, 5) is None
    resolved = step(state, GOOD, 6)
    assert resolved is not None and resolved.kind == "resolved" and resolved.step == 6
    assert state.status == "ok" and state.since_step is None and state.stable_count == 0


def test_missing_observation_changes_nothing() -> None:
    state = RuleState(rule="r")
    step(state, BAD, 1)
    before = (state.status, state.breach_count, state.stable_count, state.value, state.since_step)
    assert step(state, None, 2) is None
    assert (state.status, state.breach_count, state.stable_count, state.value, state.since_step) == before


def test_for_count_one_fires_immediately() -> None:
    state = RuleState(rule="r")
    fired = advance(state, BAD, span=Span(1, 1), severity="warning", metric="m", step=None, epoch=3)
    assert fired is not None and fired.kind == "fired" and fired.step is None and fired.epoch == 3


def test_observation_metric_overrides_default() -> None:
    state = RuleState(rule="r")
    fired = advance(state, Observation(6.0, 5.0, True, "other"), span=Span(1, 1), severity="pause",
                    metric="m", step=1, epoch=0)
    assert fired is not None and fired.metric == "other"


def test_nan_counts_as_breach_in_bound_helpers() -> None:
    assert above(math.nan, 1.0) and below(math.nan, 1.0)
    assert above(2.0, 1.0) and not above(1.0, 1.0)
    assert below(0.5, 1.0) and not below(1.0, 1.0)
    assert above(math.inf, 1.0) and below(-math.inf, 1.0)
