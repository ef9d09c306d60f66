"""Thresholds read from the trainer's YAML dict; bad values name their key."""

from __future__ import annotations

import math

import pytest

from monitor.rules import RULES, RULE_NAMES, DEFAULT_SEVERITY, Thresholds
from monitor.scenarios import healthy_run


def test_defaults() -> None:
    t = Thresholds()
    assert (t.lora_max_norm, t.logit_clamp_threshold, t.accuracy_drop_threshold) == (3.0, 50.0, 0.05)
    assert (t.attention_collapse_threshold, t.attention_healthy_min, t.attention_entropy_max) == (0.1, 0.3, 5.0)
    assert (t.max_consecutive_nan_streak_per_epoch, t.max_grad_explosion_events_per_epoch) == (3, 5)
    assert (t.stop_logit_var_min, t.stop_var_warmup_steps) == (0.5, 200)
    assert (t.lora_growth_ratio, t.lora_growth_window_epochs, t.accuracy_ema_decay) == (0.30, 5, 0.9)
    assert (t.batch_for, t.batch_resolve, t.epoch_for, t.epoch_resolve) == (10, 50, 1, 2)
    assert t.escalation_start_epoch is None
    assert Thresholds.from_run_config({}) == t == Thresholds.from_run_config(None)


def test_registry_matches_rule_names() -> None:
    assert tuple(rule.name for rule in RULES) == RULE_NAMES
    assert DEFAULT_SEVERITY["attention_collapse"] == "pause" and DEFAULT_SEVERITY["lora_norm"] == "warning"


def test_trainer_sections_are_honoured() -> None:
    config = {
        "hyper_lora": {"lora_max_norm": 2.5, "rank": 8},
        "recursive_solver": {"logit_clamp_threshold": 40},
        "meta_escalation": {"accuracy_drop_threshold": 0.02, "attention_collapse_threshold": 0.05, "start_epoch": 12},
        "training": {"max_consecutive_nan_streak_per_epoch": 4},
        "gates": {"max_grad_explosion_events_per_epoch": 7},
        "unrelated": {"anything": [1, 2]},
    }
    t = Thresholds.from_run_config(config)
    assert (t.lora_max_norm, t.logit_clamp_threshold, t.accuracy_drop_threshold) == (2.5, 40.0, 0.02)
    assert (t.attention_collapse_threshold, t.escalation_start_epoch) == (0.05, 12)
    assert (t.max_consecutive_nan_streak_per_epoch, t.max_grad_explosion_events_per_epoch) == (4, 7)


@pytest.mark.parametrize("section", [None, "training", "meta_escalation", "gates"])
def test_gate_limits_found_in_each_section(section: str | None) -> None:
    body = {"max_consecutive_nan_streak_per_epoch": 9, "max_grad_explosion_events_per_epoch": 11}
    config = body if section is None else {section: body}
    t = Thresholds.from_run_config(config)
    assert (t.max_consecutive_nan_streak_per_epoch, t.max_grad_explosion_events_per_epoch) == (9, 11)


def test_top_level_gate_wins_and_null_means_default() -> None:
    t = Thresholds.from_run_config({"max_grad_explosion_events_per_epoch": 2, "gates": {"max_grad_explosion_events_per_epoch": 8}})
    assert t.max_grad_explosion_events_per_epoch == 2
    t = Thresholds.from_run_config({"hyper_lora": {"lora_max_norm": None}, "meta_escalation": {"start_epoch": None}})
    assert t.lora_max_norm == 3.0 and t.escalation_start_epoch is None


def test_monitor_section_knobs_and_severity() -> None:
    monitor = {
        "stop_logit_var_min": 0.2, "stop_var_warmup_steps": 0, "attention_healthy_min": 0.4,
        "attention_entropy_max": 4.5, "lora_growth_ratio": 0.5, "lora_growth_window_epochs": 3,
        "accuracy_ema_decay": 0.5, "batch_for": 4, "batch_resolve": 8, "epoch_for": 2, "epoch_resolve": 3,
        "severity": {"lora_norm": "pause", "accuracy_drop": "warning"},
    }
    t = Thresholds.from_run_config({"monitor": monitor})
    for key, value in monitor.items():
        if key != "severity":
            assert getattr(t, key) == value
    assert t.severity_for("lora_norm") == "pause" and t.severity_for("accuracy_drop") == "warning"
    assert t.severity_for("attention_collapse") == "pause"
    effective = t.effective()
    assert effective["batch_for"] == 4 and set(effective["severity"]) == set(RULE_NAMES)
    assert effective["severity"]["lora_norm"] == "pause"


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"hyper_lora": {"lora_max_norm": -1}}, "hyper_lora.lora_max_norm"),
        ({"hyper_lora": {"lora_max_norm": "big"}}, "hyper_lora.lora_max_norm"),
        ({"hyper_lora": {"lora_max_norm": math.nan}}, "hyper_lora.lora_max_norm"),
        ({"recursive_solver": {"logit_clamp_threshold": True}}, "recursive_solver.logit_clamp_threshold"),
        ({"meta_escalation": {"accuracy_drop_threshold": 2}}, "meta_escalation.accuracy_drop_threshold"),
        ({"meta_escalation": {"start_epoch": -3}}, "meta_escalation.start_epoch"),
        ({"meta_escalation": {"start_epoch": 2.5}}, "meta_escalation.start_epoch"),
        ({"gates": {"max_consecutive_nan_streak_per_epoch": -1}}, "gates.max_consecutive_nan_streak_per_epoch"),
        ({"monitor": {"batch_for": 0}}, "monitor.batch_for"),
        ({"monitor": {"accuracy_ema_decay": 1.0}}, "monitor.accuracy_ema_decay"),
        ({"monitor": {"batchfor": 3}}, "monitor.batchfor"),
        ({"monitor": {"severity": {"lora_norm": "stop"}}}, "monitor.severity.lora_norm"),
        ({"monitor": {"severity": {"no_such_rule": "pause"}}}, "monitor.severity"),
        ({"monitor": {"severity": "pause"}}, "monitor.severity"),
        ({"monitor": ["batch_for"]}, "monitor"),
    ],
)
def test_bad_values_raise_value_error_naming_the_key(config: dict, key: str) -> None:
    with pytest.raises(ValueError) as info:
        Thresholds.from_run_config(config)
    assert key in str(info.value)


def test_non_mapping_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="mapping"):
        Thresholds.from_run_config(["not", "a", "dict"])  # type: ignore[arg-type]


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ValueError):
        Thresholds(batch_for=0)
    with pytest.raises(ValueError):
        Thresholds(severity={"lora_norm": "fatal"})  # type: ignore[dict-item]


def test_scenario_config_parses() -> None:
    t = Thresholds.from_run_config(healthy_run(epochs=1).config)
    assert t.escalation_start_epoch == 30 and t.lora_max_norm == 3.0 and t.max_grad_explosion_events_per_epoch == 5


def test_with_overrides_validates() -> None:
    base = Thresholds.from_run_config({"hyper_lora": {"lora_max_norm": 2.0}})
    copy = base.with_overrides({"batch_for": 3, "severity": {"lora_norm": "pause"}})
    assert (copy.batch_for, copy.lora_max_norm, copy.severity_for("lora_norm")) == (3, 2.0, "pause")
    assert base.batch_for == 10
    with pytest.raises(ValueError, match="batch_for"):
        base.with_overrides({"batch_for": -1})
    with pytest.raises(ValueError, match="no_such_knob"):
        base.with_overrides({"no_such_knob": 1})
