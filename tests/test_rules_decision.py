"""decide(): only firing pause rules pause, after the escalation start epoch; worst rank decides."""

from __future__ import annotations

import math

from monitor.rules import BatchReading, RuleEngine, RuleSet, RuleState, decide
from tests.support.rules import rules_with

T = rules_with()


def firing(rule: str, rank: int = 0, value: float = 0.01, since_step: int = 100, since_epoch: int = 4,
           metric: str | None = None) -> RuleState:
    state = RuleState(rule=rule, rank=rank, status="firing", since_step=since_step, since_epoch=since_epoch,
                      value=value, threshold=0.1, breach_count=10)
    if metric:
        state.memory["metric"] = metric
    return state


def test_nothing_firing_is_continue_ok() -> None:
    decision = decide([RuleState(rule="attention_collapse"), RuleState(rule="lora_norm", status="pending")],
                      T, current_epoch=5, current_step=130, escalation_start_epoch=None)
    assert (decision.decision, decision.health, decision.reasons, decision.warnings) == ("continue", "ok", [], [])
    assert [p["rule"] for p in decision.pending] == ["lora_norm"] and decision.actions == []


def test_firing_warning_is_continue_with_warning_and_actions() -> None:
    decision = decide([firing("lora_norm", value=3.4)], T, 5, 130, None)
    assert (decision.decision, decision.health, decision.reasons) == ("continue", "warning", [])
    assert decision.warnings[0]["rule"] == "lora_norm" and decision.warnings[0]["severity"] == "warning"
    assert [a["action"] for a in decision.actions] == ["scale_hyperlora_delta"]


def test_firing_pause_rule_pauses_with_full_reason() -> None:
    decision = decide([firing("attention_collapse", rank=1), RuleState(rule="attention_collapse", rank=0)],
                      T, current_epoch=50, current_step=1250, escalation_start_epoch=30)
    assert (decision.decision, decision.health, decision.note) == ("pause", "paused", None)
    (reason,) = decision.reasons
    # The rule's first reading is now the trainer's own peak, the mean over maps of each map's max (issue 18.2).
    assert reason == {"rule": "attention_collapse", "metric": "attention_max_mean", "value": 0.01, "threshold": 0.1,
                      "since_step": 100, "since_epoch": 4, "rank": 1, "severity": "pause", "status": "firing"}
    actions = {a["action"]: a for a in decision.actions}
    assert actions["scale_hyperlora_delta"]["factor"] == 0.5 and actions["scale_learning_rate"]["factor"] == 0.5
    assert actions["hold_meta_escalation"]["because"] == ["attention_collapse"]


def test_before_start_epoch_continue_but_reasons_reported_as_warnings() -> None:
    states = [firing("attention_collapse"), firing("nan_streak", since_step=None)]
    decision = decide(states, T, current_epoch=10, current_step=260, escalation_start_epoch=30)
    assert (decision.decision, decision.reasons, decision.health) == ("continue", [], "warning")
    assert {w["rule"] for w in decision.warnings} == {"attention_collapse", "nan_streak"}
    assert decision.note == "meta-escalation starts at epoch 30; rules are still evaluated"
    assert "hold_meta_escalation" not in {a["action"] for a in decision.actions}
    at_start = decide(states, T, current_epoch=30, current_step=750, escalation_start_epoch=30)
    assert at_start.decision == "pause" and len(at_start.reasons) == 2 and at_start.note is None


def test_unknown_current_epoch_does_not_hold_back_a_pause() -> None:
    assert decide([firing("accuracy_drop")], T, None, None, 30).decision == "pause"


def test_severity_override_changes_the_decision() -> None:
    strict = rules_with(severity={"lora_norm": "pause", "attention_collapse": "warning"})
    decision = decide([firing("lora_norm"), firing("attention_collapse")], strict, 5, 100, None)
    assert decision.decision == "pause" and [r["rule"] for r in decision.reasons] == ["lora_norm"]
    assert [w["rule"] for w in decision.warnings] == ["attention_collapse"]


def test_worst_rank_decides_through_the_engine() -> None:
    engine, states = RuleEngine(T), {}
    for step in range(12):
        engine.evaluate_batch(states, BatchReading(step=step, epoch=0, rank=0, attention_max=0.9, attention_entropy=3.0))
        engine.evaluate_batch(states, BatchReading(step=step, epoch=0, rank=1, attention_max=0.004, attention_entropy=5.8))
    decision = decide(states.values(), T, 0, 11, None)
    assert decision.decision == "pause"
    assert {(r["rule"], r["rank"]) for r in decision.reasons} == {("attention_collapse", 1)}
    assert decision.reasons[0]["since_step"] == 0


def test_entropy_metric_and_nan_values_survive_to_dict() -> None:
    decision = decide([firing("attention_collapse", value=math.nan, metric="attention_entropy")], T, 5, 1, None)
    body = decision.to_dict()
    assert body["reasons"][0]["metric"] == "attention_entropy" and body["reasons"][0]["value"] == "NaN"
    assert body["decision"] == "pause" and body["current_step"] == 1


def test_reasons_are_ordered_oldest_first() -> None:
    states = [firing("nan_streak", since_step=900, since_epoch=9), firing("attention_collapse", rank=2, since_step=50,
              since_epoch=2), firing("attention_collapse", rank=0, since_step=50, since_epoch=2)]
    decision = decide(states, T, 10, 1000, None)
    assert [(r["rule"], r["rank"]) for r in decision.reasons] == [
        ("attention_collapse", 0), ("attention_collapse", 2), ("nan_streak", 0)]


def test_disabled_meta_escalation_is_noted() -> None:
    ruleset = RuleSet.from_run_config({"training": {"meta_escalation": {"enabled": False}}})
    decision = decide([], ruleset, 3, 10, None)
    assert decision.decision == "continue" and "disables meta-escalation" in decision.note
