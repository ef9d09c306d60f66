"""Rules as data: the run config's monitor section, params from the trainer YAML, errors with paths."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.rules import BatchReading, EpochReading, RuleEngine, RuleError, RuleSet

SCI_ARC = Path("/work/.mirror/peymanrah+SCI-ARC/repo")


def errors_of(config: dict) -> list[dict]:
    with pytest.raises(RuleError) as caught:
        RuleSet.from_run_config(config)
    return caught.value.errors


def test_issue_spelling_adds_a_rule_on_an_extra_reading() -> None:
    config = {"monitor": {"rules": [{"name": "my_rule", "reading": "extra.my_metric", "above": 5, "for": 3,
                                     "severity": "pause"}]}}
    ruleset = RuleSet.from_run_config(config)
    assert ruleset.report["rules"]["added"] == ["my_rule"]
    engine, states = RuleEngine(ruleset), {}
    out = []
    for step in range(3):
        out += engine.evaluate_batch(states, BatchReading(step=step, epoch=0, extra={"my_metric": 6.0}))
    (fired,) = [t for t in out if t.rule == "my_rule"]
    assert (fired.metric, fired.severity, fired.step) == ("extra.my_metric", "pause", 2)


def test_missing_reading_makes_no_observation() -> None:
    ruleset = RuleSet.from_run_config({"monitor": {"rules": [{"name": "r", "reading": "extra.x", "above": 1}]}})
    engine, states = RuleEngine(ruleset), {}
    engine.evaluate_batch(states, BatchReading(step=1, epoch=0, extra={"y": 9.0}))
    state = states[("r", 0)]
    assert state.status == "ok" and state.value is None and state.last_step == 1


def test_override_merges_field_by_field_and_disable() -> None:
    config = {"monitor": {"rules": [{"name": "lora_norm", "above": 2.0}, {"name": "attention_weak", "enabled": False}],
                          "severity": {"logit_range": "pause"}}}
    ruleset = RuleSet.from_run_config(config)
    rule = ruleset.by_name["lora_norm"]
    assert rule.spec["reading"] == "lora_norm_preclamp_max" and rule.spec["above"] == 2.0
    assert "attention_weak" not in ruleset.by_name and ruleset.severity_for("logit_range") == "pause"
    assert ruleset.report["rules"] == {"added": [], "overridden": ["lora_norm", "attention_weak"],
                                       "disabled": ["stop_variance", "attention_weak"]}


@pytest.mark.parametrize(("config", "loc"), [
    ({"monitor": {"rules": [{"name": "x", "reading": "loss", "above": "high"}]}}, ["monitor", "rules", 0, "above"]),
    ({"monitor": {"rules": [{"name": "x", "reading": "loss", "abov": 1}]}}, ["monitor", "rules", 0, "abov"]),
    ({"monitor": {"rules": [{"name": "x", "reading": "loss / epoch.eval_accuracy", "above": 1}]}},
     ["monitor", "rules", 0, "reading"]),
    ({"monitor": {"rules": [{"name": "x", "reading": "no_such_reading", "above": 1}]}},
     ["monitor", "rules", 0, "reading"]),
    ({"monitor": {"rules": [{"name": "x", "reading": "loss", "above": {"param": "nope"}}]}},
     ["monitor", "rules", 0, "above", "param"]),
    ({"monitor": {"rules": [{"name": "x", "reading": "loss", "above": 1, "severity": "panic"}]}},
     ["monitor", "rules", 0, "severity"]),
    ({"monitor": {"rules": [{"name": "x", "reading": "loss", "growth": {"ratio": 0.3, "window_epochs": 5}}]}},
     ["monitor", "rules", 0, "growth", "window_epochs"]),
    ({"monitor": {"batch_fro": 3}}, ["monitor", "batch_fro"]),
    ({"monitor": {"params": {"nope": 3}}}, ["monitor", "params", "nope"]),
    ({"monitor": {"severity": {"nope": "pause"}}}, ["monitor", "severity", "nope"]),
    ({"monitor": {"batch_for": 0}}, ["monitor", "batch_for"]),
    ({"model": {"hyperlora_max_norm": -1}}, ["model", "hyperlora_max_norm"]),
    ({"training": {"meta_escalation": {"max_grad_explosion_events_per_epoch": "two"}}},
     ["training", "meta_escalation", "max_grad_explosion_events_per_epoch"]),
])
def test_bad_config_names_the_field_and_never_echoes_it(config: dict, loc: list) -> None:
    errors = errors_of(config)
    assert loc in [e["loc"] for e in errors], errors
    for error in errors:
        assert set(error) == {"type", "loc", "msg"}
        assert "high" not in error["msg"] and "two" not in error["msg"]


def test_seed_and_real_layouts_both_resolve_and_keys_are_configurable() -> None:
    seed = RuleSet.from_run_config({"hyper_lora": {"lora_max_norm": 2.5}, "meta_escalation": {"start_epoch": 4},
                                    "recursive_solver": {"logit_clamp_threshold": 40}})
    assert seed.report["used"]["lora_max_norm"] == {"key": "hyper_lora.lora_max_norm", "value": 2.5}
    assert seed.escalation_start_epoch == 4 and seed.param("logit_clamp_threshold") == 40.0
    real = RuleSet.from_run_config({"model": {"hyperlora_max_norm": 1.0},
                                    "training": {"meta_escalation": {"start_epoch": 25, "enabled": False}}})
    assert real.param("lora_max_norm") == 1.0 and real.escalation_start_epoch == 25 and not real.escalation_enabled
    custom = RuleSet.from_run_config({"my": {"clamp": 0.7}, "monitor": {"keys": {"lora_max_norm": ["my.clamp"]}}})
    assert custom.report["used"]["lora_max_norm"] == {"key": "my.clamp", "value": 0.7}
    assert "lora_max_norm" in RuleSet.from_run_config({}).report["defaults"]


@pytest.mark.skipif(not SCI_ARC.exists(), reason="SCI-ARC mirror not present")
def test_real_rlan_stable_dev_yaml_reports_every_source() -> None:
    text = subprocess.check_output(["git", "-C", str(SCI_ARC), "show", "HEAD:configs/rlan_stable_dev.yaml"])
    report = RuleSet.from_run_config(yaml.safe_load(text)).report
    assert report["used"]["lora_max_norm"]["key"] == "model.hyperlora_max_norm"
    assert report["used"]["attention_collapse_threshold"] == {"key": "monitoring.attn_max_collapse_threshold",
                                                              "value": 0.02}
    assert report["used"]["max_lr_backoff_events_per_epoch"]["value"] == 2
    assert report["phases"]["max_grad_explosion_events_per_epoch"] == [
        {"from_epoch": 50, "value": 0, "key": "training.meta_escalation.late_phase.max_grad_explosion_events"}]
    assert set(report["used"]) | set(report["defaults"]) == set(RuleSet.from_run_config({}).params)


def test_changed_definition_resets_the_state_and_resolves_a_firing_rule() -> None:
    before = RuleSet.from_run_config({"monitor": {"epoch_for": 1}})
    after = RuleSet.from_run_config({"max_consecutive_nan_streak_per_epoch": 10})
    states: dict = {}
    RuleEngine(before).evaluate_epoch(states, EpochReading(epoch=1, max_nan_streak=5))
    assert states[("nan_streak", 0)].status == "firing"
    (resolved,) = [t for t in RuleEngine(after).evaluate_epoch(states, EpochReading(epoch=2, max_nan_streak=5))
                   if t.rule == "nan_streak"]
    assert resolved.kind == "resolved" and resolved.note and "reset" in resolved.note
    state = states[("nan_streak", 0)]
    assert state.definition_id == after.by_name["nan_streak"].definition_id and state.status == "ok"
    assert states[("grad_explosion", 0)].definition_id == before.by_name["grad_explosion"].definition_id, "others untouched"


def test_compiled_sets_are_cached_per_config() -> None:
    assert RuleSet.from_run_config({"a": 1}) is RuleSet.from_run_config({"a": 1})
    assert RuleSet.from_run_config({"a": 1}) is not RuleSet.from_run_config({"a": 2})


def test_ratio_division_by_zero_is_a_breach_for_bounds() -> None:
    config = {"monitor": {"rules": [{"name": "ratio", "reading": "lora_norm_max / extra.hyperlora_delta_scale",
                                     "above": 100}]}}
    engine, states = RuleEngine(RuleSet.from_run_config(config)), {}
    (fired,) = [t for t in engine.evaluate_batch(states, BatchReading(
        step=1, epoch=0, lora_norm_max=1.0, extra={"hyperlora_delta_scale": 0.0})) if t.rule == "ratio"]
    assert math.isnan(fired.value) and fired.metric == "lora_norm_max / extra.hyperlora_delta_scale"


def test_epoch_vector_extras_and_warmup_until_reading_reaches() -> None:
    config = {"monitor": {"rules": [
        {"name": "clue_max", "reading": "max(epoch.extra.clue_usage)", "above": 0.9},
        {"name": "acc_floor", "reading": "epoch.eval_accuracy", "below": 0.5, "warmup": {"until_reading_reaches": 0.6}},
    ]}}
    engine, states = RuleEngine(RuleSet.from_run_config(config)), {}
    names = [t.rule for t in engine.evaluate_epoch(states, EpochReading(epoch=0, eval_accuracy=0.1,
                                                                        extra={"clue_usage": [0.2, 0.95]}))]
    assert names == ["clue_max"], "warming up: 0.1 has not reached 0.6 yet"
    engine.evaluate_epoch(states, EpochReading(epoch=1, eval_accuracy=0.7))
    names = [t.rule for t in engine.evaluate_epoch(states, EpochReading(epoch=2, eval_accuracy=0.4))]
    assert names == ["acc_floor"]


def test_keep_firing_for_holds_a_recovering_rule() -> None:
    config = {"monitor": {"rules": [{"name": "r", "reading": "loss", "above": 1, "resolve": 1,
                                     "keep_firing_for": 2}]}}
    engine, states = RuleEngine(RuleSet.from_run_config(config)), {}
    kinds = []
    for step, loss in enumerate([2.0, 0.5, 0.5, 0.5]):
        kinds += [t.kind for t in engine.evaluate_batch(states, BatchReading(step=step, epoch=0, loss=loss))
                  if t.rule == "r"]
    assert kinds == ["fired", "resolved"] and states[("r", 0)].last_step == 3


def test_outside_takes_a_yaml_list_of_two_bounds() -> None:
    config = {"monitor": {"rules": [{"name": "band", "reading": "loss", "outside": [0.0, {"param": "lora_max_norm"}]}]}}
    engine, states = RuleEngine(RuleSet.from_run_config(config)), {}
    seen = []
    for step, loss in enumerate([1.0, 3.5, -0.5]):
        engine.evaluate_batch(states, BatchReading(step=step, epoch=0, loss=loss))
        seen.append((states[("band", 0)].status, states[("band", 0)].threshold))
    assert seen == [("ok", 0.0), ("firing", 3.0), ("firing", 0.0)], "the nearer bound is reported"
    assert ["monitor", "rules", 0, "outside"] in [e["loc"] for e in errors_of(
        {"monitor": {"rules": [{"name": "b", "reading": "loss", "outside": [1.0]}]}})]
