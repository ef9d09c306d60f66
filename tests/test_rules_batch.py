"""Per-rule tests of the batch rules, through the engine (spans) and directly (observe)."""

from __future__ import annotations

import math

import pytest

from monitor.rules import BatchReading, RuleEngine, RuleState
from monitor.rules import RuleSet
from tests.support.rules import rules_with

RuleSetFromConfig = RuleSet.from_run_config

NAN = math.nan
# rule -> (healthy readings, breaching readings, NaN readings, readings lacking the metric)
CASES: dict[str, tuple[dict, dict, dict, dict]] = {
    "lora_norm": ({"lora_norm_max": 2.0}, {"lora_norm_max": 3.5}, {"lora_norm_max": NAN}, {"lora_norm_mean": 1.3}),
    # Issue 18.4, on purpose: the mean stop logit is judged, not its variance (0.01 at a healthy init).
    "stop_saturation": ({"stop_logit_mean": -1.0}, {"stop_logit_mean": 3.1}, {"stop_logit_mean": NAN},
                        {"stop_logit_var": 0.01}),
    "attention_weak": ({"attention_max": 0.8}, {"attention_max": 0.2}, {"attention_max": NAN}, {"attention_entropy": 3.0}),
    "attention_collapse": (
        {"attention_max": 0.8, "attention_entropy": 3.0},
        {"attention_max": 0.01, "attention_entropy": 3.0},
        {"attention_max": NAN, "attention_entropy": 3.0},
        {"loss": 1.0},
    ),
    "logit_range": (
        {"logit_min": -30.0, "logit_max": 30.0},
        {"logit_min": -30.0, "logit_max": 67.0},
        {"logit_min": NAN, "logit_max": NAN},
        {"loss": 1.0},
    ),
}
SHORT = rules_with(batch_for=3, batch_resolve=4, stop_var_warmup_steps=0)
RULES = rules_with().by_name


def observe(rule: str, values: dict, step: int = 500, ruleset=None):
    """One observation of ``rule`` on a fresh state."""
    impl = (ruleset or rules_with()).by_name[rule]
    return impl.observe(reading(step, values), RuleState(rule=rule), step, 0)


def reading(step: int, values: dict, epoch: int = 0, rank: int = 0) -> BatchReading:
    return BatchReading(step=step, epoch=epoch, rank=rank, **values)


def feed(engine: RuleEngine, states: dict, rule: str, pattern: str, start: int = 0) -> list:
    """Feed one reading per character: g = healthy, b = breach, n = NaN, m = missing."""
    good, bad, nan, missing = CASES[rule]
    table = {"g": good, "b": bad, "n": nan, "m": missing}
    out = []
    for offset, char in enumerate(pattern):
        out += [t for t in engine.evaluate_batch(states, reading(start + offset, table[char])) if t.rule == rule]
    return out


@pytest.mark.parametrize("rule", CASES)
def test_observe_breach_and_not(rule: str) -> None:
    good, bad, nan, missing = CASES[rule]
    assert RULES[rule].kind == "batch"
    assert observe(rule, good).breached is False
    assert observe(rule, bad).breached is True
    nan_obs = observe(rule, nan)
    assert nan_obs.breached is True and math.isnan(nan_obs.value)
    assert observe(rule, missing) is None


@pytest.mark.parametrize("rule", CASES)
def test_pending_then_firing_after_for(rule: str) -> None:
    engine, states = RuleEngine(SHORT), {}
    assert feed(engine, states, rule, "gbb") == []
    assert states[(rule, 0)].status == "pending" and states[(rule, 0)].since_step == 1
    (fired,) = feed(engine, states, rule, "b", start=3)
    assert (fired.kind, fired.step, fired.rank) == ("fired", 3, 0)
    assert fired.severity == SHORT.severity_for(rule)
    assert states[(rule, 0)].status == "firing"


@pytest.mark.parametrize("rule", CASES)
def test_nan_readings_fire(rule: str) -> None:
    engine, states = RuleEngine(SHORT), {}
    (fired,) = feed(engine, states, rule, "nnn")
    assert fired.kind == "fired" and math.isnan(fired.value)


@pytest.mark.parametrize("rule", CASES)
def test_missing_reading_is_no_observation(rule: str) -> None:
    engine, states = RuleEngine(SHORT), {}
    assert feed(engine, states, rule, "bbmmmmmm") == []
    state = states[(rule, 0)]
    assert state.status == "pending" and state.breach_count == 2 and state.last_step == 7
    assert len(feed(engine, states, rule, "b", start=8)) == 1, "missing readings did not reset the count"


@pytest.mark.parametrize("rule", CASES)
def test_hysteresis_resolve(rule: str) -> None:
    engine, states = RuleEngine(SHORT), {}
    feed(engine, states, rule, "bbb")
    assert feed(engine, states, rule, "gggbggg", start=3) == [], "breach reset the stable count"
    (resolved,) = feed(engine, states, rule, "g", start=10)
    assert resolved.kind == "resolved" and resolved.step == 10
    assert states[(rule, 0)].status == "ok"


@pytest.mark.parametrize("rule", CASES)
def test_noisy_batches_do_not_fire_with_default_span(rule: str) -> None:
    engine, states = RuleEngine(rules_with(stop_var_warmup_steps=0)), {}
    assert feed(engine, states, rule, "g" * 5 + "b" + "g" * 5 + "b" * 9 + "g" * 3) == []
    assert states[(rule, 0)].status == "ok"


def test_lora_norm_at_cap_is_a_breach() -> None:
    obs = observe("lora_norm", {"lora_norm_max": 3.0}, step=1)
    assert obs.breached and obs.threshold == 3.0 and obs.metric == "lora_norm_max"
    obs = observe("lora_norm", {"lora_norm_max": 3.0, "lora_norm_preclamp_max": 2.0}, step=1)
    assert not obs.breached and obs.metric == "lora_norm_preclamp_max", "the pre-clamp norm speaks first"


def test_stop_variance_rule_is_off_by_default_and_waits_for_warmup() -> None:
    assert "stop_variance" not in RULES
    on = RuleSetFromConfig({"monitor": {"rules": [{"name": "stop_variance", "enabled": True}],
                                        "stop_var_warmup_steps": 200}})
    assert observe("stop_variance", {"stop_logit_var": 0.01}, step=199, ruleset=on) is None
    assert observe("stop_variance", {"stop_logit_var": 0.01}, step=200, ruleset=on).breached


def test_attention_collapse_on_entropy_alone_reports_entropy() -> None:
    engine, states = RuleEngine(SHORT), {}
    transitions = []
    for step in range(3):
        transitions += engine.evaluate_batch(states, reading(step, {"attention_max": 0.7, "attention_entropy": 5.5}))
    (fired,) = [t for t in transitions if t.rule == "attention_collapse"]
    assert (fired.metric, fired.value, fired.threshold, fired.severity) == ("attention_entropy", 5.5, 5.0, "pause")
    assert states[("attention_collapse", 0)].memory["metric"] == "attention_entropy"
    assert states[("attention_weak", 0)].status == "ok"


def test_attention_collapse_uses_entropy_when_peak_missing() -> None:
    obs = observe("attention_collapse", {"attention_entropy": 2.0}, step=1)
    assert obs is not None and not obs.breached and obs.metric == "attention_entropy"


def test_logit_range_reports_the_worse_side() -> None:
    obs = observe("logit_range", {"logit_min": -67.0, "logit_max": 20.0}, step=1)
    assert obs.breached and (obs.metric, obs.value, obs.threshold) == ("logit_min", -67.0, -50.0)
    obs = observe("logit_range", {"logit_max": 49.9}, step=1)
    assert not obs.breached and obs.metric == "logit_max"


def lora_epochs(engine: RuleEngine, states: dict, means: list[float], per_epoch: int = 4) -> list:
    """One epoch per mean, ``per_epoch`` batches each, plus one batch to close the last."""
    out, step = [], 0
    for epoch, mean in enumerate([*means, means[-1]]):
        for _ in range(per_epoch if epoch < len(means) else 1):
            out += [t for t in engine.evaluate_batch(states, reading(step, {"lora_norm_mean": mean}, epoch))
                    if t.rule == "lora_growth"]
            step += 1
    return out


def test_lora_growth_fires_on_documented_drift() -> None:
    # The window is 25 epochs by default now (issue 18.5); a 5-epoch window is still a knob.
    engine, states = RuleEngine(rules_with(lora_growth_window_epochs=5)), {}
    means = [1.27] * 6 + [1.27 + 0.106 * i for i in range(1, 6)]  # 1.27 -> 1.80 in 5 epochs
    transitions = lora_epochs(engine, states, means)
    assert transitions and transitions[0].kind == "fired" and transitions[0].severity == "warning"
    # Issue 17, on purpose: the event names the growth it measured, not the raw metric.
    assert transitions[0].value > 0.30 and transitions[0].metric == "growth(lora_norm_mean)"


def test_lora_growth_ignores_slow_or_flat_norms_and_early_windows() -> None:
    engine, states = RuleEngine(rules_with()), {}
    assert lora_epochs(engine, states, [1.2 + 0.01 * i for i in range(30)]) == []
    state = states[("lora_growth", 0)]
    assert len(state.memory["d"]["means"]) <= rules_with().param("lora_growth_window_epochs") + 1
    engine, states = RuleEngine(rules_with()), {}
    assert lora_epochs(engine, states, [0.1, 0.5, 1.0, 1.3]) == [], "window not full yet"
    assert states[("lora_growth", 0)].value is None


def test_lora_growth_nan_epoch_is_a_breach() -> None:
    engine, states = RuleEngine(rules_with()), {}
    (fired,) = lora_epochs(engine, states, [1.2, NAN])
    assert fired.kind == "fired" and math.isnan(fired.value)
