"""Per-rule tests of the epoch rules: accuracy EMA drop, NaN streaks, gradient explosions."""

from __future__ import annotations

import math

import pytest

from monitor.rules import EpochReading, RuleEngine, RuleState
from tests.support.rules import rules_with

# The accuracy rule waits 3 epochs by default now (issue 18.6); these tests judge from epoch 0.
NO_WARMUP = {"accuracy_warmup_epochs": 0}


def observer(rule: str, **knobs):
    """``observe(reading, state)`` of one rule under the given knobs."""
    impl = rules_with(**{**NO_WARMUP, **knobs}).by_name[rule]
    return lambda reading, state: impl.observe(reading, state, None, reading.epoch)


def ema(state: RuleState) -> float:
    return state.memory["r"]["ema"]


def run(engine: RuleEngine, states: dict, rows: list[dict], rule: str, start: int = 0) -> list:
    out = []
    for offset, values in enumerate(rows):
        reading = EpochReading(epoch=start + offset, **values)
        out += [t for t in engine.evaluate_epoch(states, reading, step=100 * (start + offset)) if t.rule == rule]
    return out


def test_accuracy_ema_math() -> None:
    observe = observer("accuracy_drop", accuracy_ema_decay=0.9)
    state = RuleState(rule="accuracy_drop")
    first = observe(EpochReading(epoch=0, eval_accuracy=0.9), state)
    assert state.memory == {"r": {"ema": 0.9}, "d": {"best": 0.9}} and first.value == 0.0 and not first.breached
    second = observe(EpochReading(epoch=1, eval_accuracy=0.5), state)
    assert ema(state) == pytest.approx(0.9 * 0.9 + 0.1 * 0.5)
    assert second.value == pytest.approx(0.04) and not second.breached
    third = observe(EpochReading(epoch=2, eval_accuracy=0.3), state)
    assert third.value == pytest.approx(0.9 - (0.9 * 0.86 + 0.1 * 0.3)) and third.breached


def test_accuracy_prefers_eval_then_train_and_skips_missing() -> None:
    observe = observer("accuracy_drop")
    state = RuleState(rule="accuracy_drop")
    observe(EpochReading(epoch=0, eval_accuracy=0.8, train_accuracy=0.1), state)
    assert ema(state) == 0.8
    state = RuleState(rule="accuracy_drop")
    observe(EpochReading(epoch=0, train_accuracy=0.7), state)
    assert ema(state) == 0.7
    assert observe(EpochReading(epoch=1), state) is None


def test_accuracy_nan_is_breach_and_does_not_poison_ema() -> None:
    observe = observer("accuracy_drop")
    state = RuleState(rule="accuracy_drop")
    observe(EpochReading(epoch=0, eval_accuracy=0.9), state)
    obs = observe(EpochReading(epoch=1, eval_accuracy=math.nan), state)
    assert obs.breached and math.isnan(obs.value) and ema(state) == 0.9


def test_accuracy_drop_fires_and_resolves_with_epoch_spans() -> None:
    engine, states = RuleEngine(rules_with(**NO_WARMUP)), {}
    rows = [{"eval_accuracy": a} for a in [0.5, 0.8, 0.93, 0.93, 0.93, 0.93, 0.93]]
    assert run(engine, states, rows, "accuracy_drop") == [], "rising accuracy never breaches"
    engine, states = RuleEngine(rules_with(**NO_WARMUP)), {}
    assert run(engine, states, [{"eval_accuracy": 0.93}] * 7, "accuracy_drop") == []
    fell = [{"eval_accuracy": 0.4}]  # EMA 0.93 -> 0.877: more than 0.05 below its best
    (fired,) = run(engine, states, fell, "accuracy_drop", start=7)
    assert (fired.kind, fired.severity, fired.epoch, fired.step) == ("fired", "pause", 7, 700)
    assert states[("accuracy_drop", 0)].since_epoch == 7
    # Recovery is measured against the best EMA and needs epoch_resolve (2) good epochs.
    back = run(engine, states, [{"eval_accuracy": 0.97}] * 8, "accuracy_drop", start=8)
    assert [(t.kind, t.epoch) for t in back] == [("resolved", 9)]


@pytest.mark.parametrize(("rule", "field", "limit"), [
    ("nan_streak", "max_nan_streak", 3),
    ("grad_explosion", "grad_explosion_events", 5),
    ("lr_backoff", "lr_backoff_events", 5),
])
def test_gate_rules(rule: str, field: str, limit: int) -> None:
    t = rules_with()
    impl, observe = t.by_name[rule], observer(rule)
    assert impl.kind == "epoch" and impl.severity == "pause"
    assert not observe(EpochReading(epoch=0, **{field: limit}), RuleState(rule=rule)).breached
    obs = observe(EpochReading(epoch=0, **{field: limit + 1}), RuleState(rule=rule))
    assert obs.breached and (obs.value, obs.threshold) == (limit + 1, limit)
    assert observe(EpochReading(epoch=0), RuleState(rule=rule)) is None
    engine, states = RuleEngine(t), {}
    rows = [{field: 0}, {field: limit + 2}, {}, {field: 0}, {field: limit + 1}, {field: 0}, {field: 0}]
    kinds = [(tr.kind, tr.epoch) for tr in run(engine, states, rows, rule)]
    assert kinds == [("fired", 1), ("resolved", 6)], "missing epoch 2 does not count as healthy"


def test_epoch_for_span_two_needs_two_bad_epochs() -> None:
    engine, states = RuleEngine(rules_with(epoch_for=2)), {}
    assert run(engine, states, [{"max_nan_streak": 9}, {"max_nan_streak": 0}], "nan_streak") == []
    assert [t.epoch for t in run(engine, states, [{"max_nan_streak": 9}] * 2, "nan_streak", start=2)] == [3]
