"""Thresholds (rule params) read from the trainer's YAML dict; bad values name their key."""

from __future__ import annotations

import math

import pytest

from monitor.rules import RuleError, RuleSet
from monitor.scenarios import healthy_run
from tests.support.rules import BATCH_RULES, EPOCH_RULES, rules_with


def values(config: dict | None, *names: str) -> tuple:
    ruleset = RuleSet.from_run_config(config)
    return tuple(ruleset.param(name) for name in names)


def test_defaults() -> None:
    assert values({}, "lora_max_norm", "logit_clamp_threshold", "accuracy_drop_threshold") == (3.0, 50.0, 0.05)
    assert values({}, "attention_collapse_threshold", "attention_healthy_min", "attention_entropy_max") == (
        0.1, 0.3, 5.0)
    assert values({}, "max_consecutive_nan_streak_per_epoch", "max_grad_explosion_events_per_epoch") == (3, 5)
    assert values({}, "stop_logit_var_min", "stop_var_warmup_steps") == (0.5, 200)
    # Window 5 -> 25 epochs on purpose (issue 18.5: a long window, judged per unit of delta scale).
    assert values({}, "lora_growth_ratio", "lora_growth_window_epochs", "accuracy_ema_decay") == (0.30, 25, 0.9)
    assert values({}, "batch_for", "batch_resolve", "epoch_for", "epoch_resolve") == (10, 50, 1, 2)
    assert RuleSet.from_run_config({}).escalation_start_epoch is None
    assert RuleSet.from_run_config({}) is RuleSet.from_run_config(None)


def test_shipped_rules_and_severities() -> None:
    ruleset = rules_with()
    assert {r.name for r in ruleset.rules} == set(BATCH_RULES) | set(EPOCH_RULES) | {"stream_stale"}
    assert ruleset.severity_for("attention_collapse") == "pause" and ruleset.severity_for("lora_norm") == "warning"


def test_trainer_sections_are_honoured() -> None:
    config = {
        "hyper_lora": {"lora_max_norm": 2.5, "rank": 8},
        "recursive_solver": {"logit_clamp_threshold": 40},
        "meta_escalation": {"accuracy_drop_threshold": 0.02, "attention_collapse_threshold": 0.05, "start_epoch": 12},
        "training": {"max_consecutive_nan_streak_per_epoch": 4},
        "gates": {"max_grad_explosion_events_per_epoch": 7},
        "unrelated": {"anything": [1, 2]},
    }
    assert values(config, "lora_max_norm", "logit_clamp_threshold", "accuracy_drop_threshold") == (2.5, 40.0, 0.02)
    assert values(config, "attention_collapse_threshold") == (0.05,)
    assert RuleSet.from_run_config(config).escalation_start_epoch == 12
    assert values(config, "max_consecutive_nan_streak_per_epoch", "max_grad_explosion_events_per_epoch") == (4, 7)


@pytest.mark.parametrize("section", [None, "training", "meta_escalation", "gates"])
def test_gate_limits_found_in_each_section(section: str | None) -> None:
    body = {"max_consecutive_nan_streak_per_epoch": 9, "max_grad_explosion_events_per_epoch": 11}
    config = body if section is None else {section: body}
    assert values(config, "max_consecutive_nan_streak_per_epoch", "max_grad_explosion_events_per_epoch") == (9, 11)


def test_top_level_gate_wins_and_null_means_default() -> None:
    config = {"max_grad_explosion_events_per_epoch": 2, "gates": {"max_grad_explosion_events_per_epoch": 8}}
    assert values(config, "max_grad_explosion_events_per_epoch") == (2,)
    config = {"hyper_lora": {"lora_max_norm": None}, "meta_escalation": {"start_epoch": None}}
    assert values(config, "lora_max_norm") == (3.0,) and RuleSet.from_run_config(config).escalation_start_epoch is None


def test_monitor_section_knobs_and_severity() -> None:
    monitor = {
        "stop_logit_var_min": 0.2, "stop_var_warmup_steps": 0, "attention_healthy_min": 0.4,
        "attention_entropy_max": 4.5, "lora_growth_ratio": 0.5, "lora_growth_window_epochs": 3,
        "accuracy_ema_decay": 0.5, "batch_for": 4, "batch_resolve": 8, "epoch_for": 2, "epoch_resolve": 3,
        "severity": {"lora_norm": "pause", "accuracy_drop": "warning"},
    }
    ruleset = RuleSet.from_run_config({"monitor": monitor})
    for key, value in monitor.items():
        if key != "severity":
            assert ruleset.param(key) == value
            assert ruleset.report["used"][key]["key"] == f"monitor.{key}"
    assert ruleset.severity_for("lora_norm") == "pause" and ruleset.severity_for("accuracy_drop") == "warning"
    assert ruleset.severity_for("attention_collapse") == "pause"
    assert ruleset.by_name["attention_weak"].span.for_count == 4


@pytest.mark.parametrize(
    ("config", "loc"),
    [
        ({"hyper_lora": {"lora_max_norm": -1}}, ["hyper_lora", "lora_max_norm"]),
        ({"hyper_lora": {"lora_max_norm": "big"}}, ["hyper_lora", "lora_max_norm"]),
        ({"hyper_lora": {"lora_max_norm": math.nan}}, ["hyper_lora", "lora_max_norm"]),
        ({"recursive_solver": {"logit_clamp_threshold": True}}, ["recursive_solver", "logit_clamp_threshold"]),
        ({"meta_escalation": {"accuracy_drop_threshold": 2}}, ["meta_escalation", "accuracy_drop_threshold"]),
        ({"meta_escalation": {"start_epoch": -3}}, ["meta_escalation", "start_epoch"]),
        ({"meta_escalation": {"start_epoch": 2.5}}, ["meta_escalation", "start_epoch"]),
        ({"gates": {"max_consecutive_nan_streak_per_epoch": -1}}, ["gates", "max_consecutive_nan_streak_per_epoch"]),
        ({"monitor": {"batch_for": 0}}, ["monitor", "batch_for"]),
        ({"monitor": {"accuracy_ema_decay": 1.0}}, ["monitor", "accuracy_ema_decay"]),
        ({"monitor": {"batchfor": 3}}, ["monitor", "batchfor"]),
        ({"monitor": {"severity": {"lora_norm": "stop"}}}, ["monitor", "severity", "lora_norm"]),
        ({"monitor": {"severity": {"no_such_rule": "pause"}}}, ["monitor", "severity", "no_such_rule"]),
        ({"monitor": {"severity": "pause"}}, ["monitor", "severity"]),
        ({"monitor": ["batch_for"]}, ["monitor"]),
    ],
)
def test_bad_values_raise_naming_the_key(config: dict, loc: list) -> None:
    with pytest.raises(RuleError) as info:
        RuleSet.from_run_config(config)
    assert loc in [error["loc"] for error in info.value.errors]
    assert ".".join(map(str, loc)) in str(info.value)


def test_non_mapping_config_is_rejected() -> None:
    with pytest.raises(RuleError, match="mapping"):
        RuleSet.from_run_config(["not", "a", "dict"])  # type: ignore[arg-type]


def test_scenario_config_parses() -> None:
    ruleset = RuleSet.from_run_config(healthy_run(epochs=1).config)
    assert ruleset.escalation_start_epoch == 30 and ruleset.param("lora_max_norm") == 3.0
    assert ruleset.param("max_grad_explosion_events_per_epoch") == 5
