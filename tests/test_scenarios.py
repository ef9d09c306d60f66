"""Scenario acceptance: the documented collapse pauses before accuracy falls; healthy runs never pause."""

from __future__ import annotations

import math
from dataclasses import fields
from statistics import mean, median

import pytest

from monitor.rules import BatchReading, EpochReading, RuleEngine, RuleSet, decide
from monitor.scenarios import Trace, collapse_run, healthy_run, to_readings

BATCH_KEYS = {"step", "epoch", "rank", "lora_norm_mean", "lora_norm_max", "stop_logit_var", "attention_max",
              "attention_entropy", "logit_min", "logit_max", "accuracy", "loss", "nan_count", "grad_norm"}
EPOCH_KEYS = {"epoch", "rank", "eval_accuracy", "train_accuracy", "grad_explosion_events", "lr_backoff_events",
              "max_nan_streak"}


def replay(trace: Trace, thresholds: RuleSet, start_epoch: int | None):
    """Like the live service: engine after every reading, then decide(); yields (step, epoch, decision, states)."""
    engine, states = RuleEngine(thresholds), {}
    batches, summaries = to_readings(trace)
    queue = list(summaries)
    last_step = None
    for batch in batches:
        while queue and queue[0].epoch < batch.epoch:
            summary = queue.pop(0)
            engine.evaluate_epoch(states, summary, step=last_step)
            yield last_step, batch.epoch, decide(states.values(), thresholds, batch.epoch, last_step, start_epoch), states
        engine.evaluate_batch(states, batch)
        last_step = batch.step
        yield batch.step, batch.epoch, decide(states.values(), thresholds, batch.epoch, batch.step, start_epoch), states
    for summary in queue:
        engine.evaluate_epoch(states, summary, step=last_step)
        yield last_step, summary.epoch, decide(states.values(), thresholds, summary.epoch, last_step, start_epoch), states


def first_pause(trace: Trace, start_epoch: int | None = None, thresholds: RuleSet | None = None):
    thresholds = thresholds or RuleSet.from_run_config(trace.config)
    for step, epoch, decision, _ in replay(trace, thresholds, start_epoch):
        if decision.decision == "pause":
            return step, epoch, decision
    return None


def test_traces_are_deterministic_and_shaped_like_records() -> None:
    a, b = healthy_run(epochs=3, seed=7), healthy_run(epochs=3, seed=7)
    assert a.batches == b.batches or _nan_equal(a.batches, b.batches)
    assert healthy_run(epochs=3, seed=8).batches != a.batches
    assert all(set(row) == BATCH_KEYS for row in a.batches) and all(set(row) == EPOCH_KEYS for row in a.epochs)
    # The engine's readings are a superset: issue 18's new readings and the trainer's extras.
    assert BATCH_KEYS <= {f.name for f in fields(BatchReading)} and EPOCH_KEYS <= {f.name for f in fields(EpochReading)}
    two = healthy_run(epochs=2, steps_per_epoch=5, ranks=2)
    assert [(r["step"], r["rank"]) for r in two.batches[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len(two.batches) == 20 and len(two.epochs) == 4
    batches, epochs = to_readings(two)
    assert isinstance(batches[0], BatchReading) and isinstance(epochs[0], EpochReading)


def _nan_equal(left: list[dict], right: list[dict]) -> bool:
    return all(all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in
                   zip(l.values(), r.values())) for l, r in zip(left, right))


def test_healthy_run_levels_and_noise() -> None:
    trace = healthy_run()
    late = [r for r in trace.batches if r["epoch"] >= 40]
    assert 1.2 <= mean(r["lora_norm_mean"] for r in late) <= 1.4
    assert 0.8 <= mean(r["stop_logit_var"] for r in late) <= 1.5
    assert 0.6 <= mean(r["attention_max"] for r in late if r["attention_max"] is not None) <= 0.95
    assert 2.0 <= mean(r["attention_entropy"] for r in late if r["attention_entropy"] is not None) <= 4.0
    assert 0.91 <= mean(e["eval_accuracy"] for e in trace.epochs[-20:]) <= 0.95
    # Single batches do cross bounds, including the pause rule's: the `for` span must absorb them.
    assert any(r["attention_max"] is not None and r["attention_max"] < 0.1 for r in trace.batches)
    assert any(r["lora_norm_max"] > 3.0 for r in trace.batches)
    assert any(r["stop_logit_var"] < 0.5 for r in trace.batches)
    assert any(r["attention_max"] is None for r in trace.batches)


def test_collapse_run_follows_the_documented_failure() -> None:
    trace = collapse_run()
    def epoch_mean(key: str, epoch: int) -> float:
        return mean(r[key] for r in trace.batches if r["epoch"] == epoch and r[key] is not None)
    assert epoch_mean("lora_norm_mean", 44) == pytest.approx(1.27, abs=0.03)
    assert epoch_mean("lora_norm_mean", 60) == pytest.approx(1.80, abs=0.04)
    assert median(r["stop_logit_var"] for r in trace.batches if r["epoch"] == 60) < 0.02
    assert median(r["attention_max"] for r in trace.batches if r["epoch"] == 44 and r["attention_max"]) > 0.95
    assert epoch_mean("attention_max", 60) < 0.01
    assert epoch_mean("attention_entropy", 60) > 5.0
    assert max(r["logit_max"] for r in trace.batches if not math.isnan(r["logit_max"])) >= 65
    eval_acc = {e["epoch"]: e["eval_accuracy"] for e in trace.epochs}
    drop = trace.accuracy_drop_epoch
    assert drop == 56 and trace.accuracy_drop_step == 56 * 25
    assert eval_acc[drop - 1] == pytest.approx(0.93, abs=0.02) and eval_acc[75] == pytest.approx(0.79, abs=0.02)


@pytest.mark.parametrize("start_epoch", ["config", None])
def test_collapse_pauses_before_accuracy_drops(start_epoch: str | None) -> None:
    trace = collapse_run()
    thresholds = RuleSet.from_run_config(trace.config)
    start = thresholds.escalation_start_epoch if start_epoch == "config" else None
    found = first_pause(trace, start, thresholds)
    assert found is not None
    step, epoch, decision = found
    assert step < trace.accuracy_drop_step and epoch < trace.accuracy_drop_epoch
    assert "attention_collapse" in {r["rule"] for r in decision.reasons}
    assert "hold_meta_escalation" in {a["action"] for a in decision.actions}


def test_collapse_on_one_rank_pauses_even_if_rank_zero_is_healthy() -> None:
    trace = collapse_run(ranks=2, collapsing_ranks=[1], epochs=60)
    step, _, decision = first_pause(trace, None)
    assert step < trace.accuracy_drop_step
    assert {r["rank"] for r in decision.reasons} == {1}


@pytest.mark.parametrize(("ranks", "seed"), [(1, 0), (1, 1), (2, 0)])
def test_healthy_run_never_pauses(ranks: int, seed: int) -> None:
    trace = healthy_run(ranks=ranks, seed=seed)
    thresholds = RuleSet.from_run_config(trace.config)
    saw_pending = False
    for step, epoch, decision, states in replay(trace, thresholds, start_epoch=None):
        assert decision.decision == "continue", f"paused at step {step}, epoch {epoch}: {decision.reasons}"
        assert decision.health == "ok", f"a rule fired at step {step}: {decision.warnings}"
        saw_pending = saw_pending or bool(decision.pending)
    assert saw_pending, "noise should make some rule pending (and then recover) in a healthy run"
