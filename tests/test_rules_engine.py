"""Engine behaviour: per-rank states, late readings ignored, O(1) work per reading."""

from __future__ import annotations

import json

from monitor.floats import encode_tree
from monitor.rules import BatchReading, EpochReading, RuleEngine
from tests.support.rules import BATCH_RULES, EPOCH_RULES, rules_with

SHORT = rules_with(batch_for=2, batch_resolve=2)
COLLAPSED = {"attention_max": 0.01, "attention_entropy": 5.9}
HEALTHY = {"attention_max": 0.8, "attention_entropy": 3.0}


def test_states_are_created_per_rule_and_rank() -> None:
    engine, states = RuleEngine(SHORT), {}
    engine.evaluate_batch(states, BatchReading(step=0, epoch=0, rank=0, **HEALTHY))
    engine.evaluate_batch(states, BatchReading(step=0, epoch=0, rank=3, **HEALTHY))
    engine.evaluate_epoch(states, EpochReading(epoch=0, rank=3, max_nan_streak=0))
    assert set(states) == {(rule, rank) for rule in BATCH_RULES for rank in (0, 3)} | {
        (rule, 3) for rule in EPOCH_RULES}


def test_ranks_are_independent() -> None:
    engine, states = RuleEngine(SHORT), {}
    fired = []
    for step in range(3):
        fired += engine.evaluate_batch(states, BatchReading(step=step, epoch=0, rank=0, **HEALTHY))
        fired += engine.evaluate_batch(states, BatchReading(step=step, epoch=0, rank=1, **COLLAPSED))
    assert {(t.rule, t.rank) for t in fired} == {("attention_collapse", 1), ("attention_weak", 1)}
    assert states[("attention_collapse", 0)].status == "ok"


def test_late_and_duplicate_batches_are_ignored() -> None:
    engine, states = RuleEngine(SHORT), {}
    engine.evaluate_batch(states, BatchReading(step=10, epoch=0, **COLLAPSED))
    assert engine.evaluate_batch(states, BatchReading(step=10, epoch=0, **COLLAPSED)) == []
    assert engine.evaluate_batch(states, BatchReading(step=5, epoch=0, **COLLAPSED)) == []
    state = states[("attention_collapse", 0)]
    assert state.status == "pending" and state.breach_count == 1 and state.last_step == 10
    assert [t.rule for t in engine.evaluate_batch(states, BatchReading(step=11, epoch=0, **COLLAPSED))] == [
        "attention_weak", "attention_collapse"]


def test_late_and_duplicate_epochs_are_ignored() -> None:
    engine, states = RuleEngine(rules_with()), {}
    assert len(engine.evaluate_epoch(states, EpochReading(epoch=4, max_nan_streak=9))) == 1
    assert engine.evaluate_epoch(states, EpochReading(epoch=4, max_nan_streak=0)) == []
    assert engine.evaluate_epoch(states, EpochReading(epoch=2, max_nan_streak=0)) == []
    assert states[("nan_streak", 0)].stable_count == 0 and states[("nan_streak", 0)].last_epoch == 4


def test_readings_without_metrics_still_advance_the_cursor() -> None:
    engine, states = RuleEngine(SHORT), {}
    engine.evaluate_batch(states, BatchReading(step=7, epoch=0))
    assert all(state.last_step == 7 and state.status == "ok" for state in states.values())


def synthetic(step: int, rank: int = 0) -> BatchReading:
    """Cheap readings that keep every batch rule busy (growth, pending, resolving)."""
    wobble = (step * 7919) % 97 / 97.0
    return BatchReading(
        step=step, epoch=step // 25, rank=rank, lora_norm_mean=1.2 + 0.3 * wobble, lora_norm_max=2.0 + wobble,
        stop_logit_var=0.3 + wobble, attention_max=0.05 + 0.9 * wobble, attention_entropy=3.0 + 2.5 * wobble,
        logit_min=-30.0 - 30 * wobble, logit_max=30.0 + 30 * wobble,
    )


def memory_size(states: dict) -> int:
    return sum(len(json.dumps(encode_tree(state.memory))) for state in states.values())


def test_memory_stays_bounded_as_history_grows() -> None:
    # Rules are pure functions over their state, so bounded state means bounded work per
    # reading; the per-reading cost itself is measured by ``python -m benchmarks.rules_history``.
    engine, states = RuleEngine(rules_with(stop_var_warmup_steps=0)), {}
    for step in range(0, 2_000):
        engine.evaluate_batch(states, synthetic(step))
    engine.evaluate_epoch(states, EpochReading(epoch=1_999 // 25, eval_accuracy=0.9, max_nan_streak=0))
    size_early = memory_size(states)
    for step in range(2_000, 52_000):
        engine.evaluate_batch(states, synthetic(step))
        if step % 25 == 0:
            engine.evaluate_epoch(states, EpochReading(epoch=step // 25, eval_accuracy=0.9, max_nan_streak=0))
    assert memory_size(states) <= size_early + 64, "rule memory must not grow with history"
    assert len(states) == len(BATCH_RULES) + len(EPOCH_RULES)
