"""The shipped rules file against the failures issue 18 names (and the designed healthy shapes)."""

from __future__ import annotations

import math

from monitor.rules import BatchReading, EpochReading, RuleEngine, RuleSet

FAST = {"monitor": {"batch_for": 3, "batch_resolve": 4}}


def batches(engine: RuleEngine, states: dict, rows: list[dict], rule: str, start: int = 0, epoch: int = 0) -> list:
    out = []
    for offset, values in enumerate(rows):
        values = {"epoch": epoch, **values}
        out += [t for t in engine.evaluate_batch(states, BatchReading(step=start + offset, **values)) if t.rule == rule]
    return out


def lora_epochs(engine: RuleEngine, states: dict, norms: list[float], scales: list[float] | None = None,
                per_epoch: int = 3) -> list:
    """One epoch per norm, ``per_epoch`` batches each, plus one batch to close the last epoch."""
    out, step = [], 0
    scales = scales or [None] * len(norms)
    for epoch, (norm, scale) in enumerate([*zip(norms, scales), (norms[-1], scales[-1])]):
        extra = None if scale is None else {"hyperlora_delta_scale": scale}
        for _ in range(per_epoch if epoch < len(norms) else 1):
            reading = BatchReading(step=step, epoch=epoch, lora_norm_mean=norm, extra=extra)
            out += [t for t in engine.evaluate_batch(states, reading) if t.rule == "lora_growth"]
            step += 1
    return out


def test_seed_collapse_lora_growth_over_25_epochs_warns() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    norms = [1.27] * 20 + [1.27 + (1.80 - 1.27) * i / 25 for i in range(1, 26)]
    transitions = lora_epochs(engine, states, norms)
    assert transitions and transitions[0].kind == "fired" and transitions[0].severity == "warning"
    assert transitions[0].metric == "growth(lora_norm_mean)", "names the growth, not the raw metric"
    assert 0.30 < transitions[0].value < 0.42


def test_delta_scale_ramp_with_proportional_norm_is_quiet() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    scales = [0.005] * 8 + [0.005 + (0.05 - 0.005) * i / 8 for i in range(1, 9)] + [0.05] * 10 \
        + [0.05 + (0.2 - 0.05) * i / 12 for i in range(1, 13)] + [0.2] * 15
    norms = [6.0 * scale for scale in scales]  # the norm follows the designed ramp
    assert lora_epochs(engine, states, norms, scales) == []
    assert states[("lora_growth", 0)].memory["metric"] == "growth(lora_norm_mean / extra.hyperlora_delta_scale)"
    # The same norms without the scale reported: judged raw, so the ramp is growth.
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    assert lora_epochs(engine, states, norms)[0].kind == "fired"


def test_healthy_stop_init_is_quiet_and_mean_saturation_fires() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config(FAST)), {}
    healthy = {"stop_logit_var": 0.01, "stop_logit_mean": -1.0, "stop_logit_abs_mean": 1.0, "stop_prob_mean": 0.27}
    assert batches(engine, states, [healthy] * 400, "stop_saturation") == []
    saturated = {"stop_logit_var": 0.01, "stop_logit_mean": 3.1, "stop_logit_abs_mean": 3.1, "stop_prob_mean": 0.957}
    (fired,) = batches(engine, states, [saturated] * 3, "stop_saturation", start=400)
    assert (fired.kind, fired.metric, fired.value, fired.threshold) == ("fired", "stop_logit_abs_mean", 3.1, 2.5)


def test_stop_mean_alone_is_read_through_abs() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config(FAST)), {}
    (fired,) = batches(engine, states, [{"stop_logit_mean": -3.1}] * 3, "stop_saturation")
    assert fired.metric == "abs(stop_logit_mean)" and fired.value == 3.1


def test_uniform_attention_at_3x3_and_30x30_in_one_run_fires() -> None:
    ruleset = RuleSet.from_run_config(FAST)
    uniform_3 = {"attention_max": 1 / 9, "attention_max_mean": 1 / 9, "attention_peak_ratio": 1.0,
                 "attention_entropy": math.log(9), "attention_entropy_norm": 1.0}
    uniform_30 = {"attention_max": 1 / 900, "attention_max_mean": 1 / 900, "attention_peak_ratio": 1.0,
                  "attention_entropy": math.log(900), "attention_entropy_norm": 1.0}
    sharp_3 = {"attention_max": 0.9, "attention_max_mean": 0.8, "attention_peak_ratio": 7.2,
               "attention_entropy": 0.5, "attention_entropy_norm": 0.23}
    sharp_30 = {"attention_max": 0.5, "attention_max_mean": 0.4, "attention_peak_ratio": 360.0,
                "attention_entropy": 2.0, "attention_entropy_norm": 0.29}
    engine, states = RuleEngine(ruleset), {}
    assert batches(engine, states, [sharp_3, sharp_30] * 50, "attention_collapse") == []
    fired = batches(engine, states, [uniform_3, uniform_30] * 2, "attention_collapse", start=100)
    assert [t.kind for t in fired] == ["fired"] and fired[0].severity == "pause"
    # 3x3 alone: the old absolute readings miss it (0.11 > 0.1, ln 9 < 5 nats); the size-free ones do not.
    engine, states = RuleEngine(ruleset), {}
    (fired,) = batches(engine, states, [uniform_3] * 3, "attention_collapse")
    assert fired.metric == "attention_peak_ratio"


def test_lr_backoff_rule_and_late_phase_limit() -> None:
    config = {"training": {"meta_escalation": {
        "max_lr_backoff_events_per_epoch": 2,
        "late_phase": {"enabled": True, "start_epoch": 50, "max_lr_backoff_events": 0}}}}
    engine, states = RuleEngine(RuleSet.from_run_config(config)), {}
    assert engine.evaluate_epoch(states, EpochReading(epoch=10, lr_backoff_events=2)) == []
    (fired,) = [t for t in engine.evaluate_epoch(states, EpochReading(epoch=11, lr_backoff_events=3))
                if t.rule == "lr_backoff"]
    assert (fired.threshold, fired.severity) == (2.0, "pause")
    engine, states = RuleEngine(RuleSet.from_run_config(config)), {}
    assert engine.evaluate_epoch(states, EpochReading(epoch=49, lr_backoff_events=1)) == []
    (late,) = engine.evaluate_epoch(states, EpochReading(epoch=50, lr_backoff_events=1))
    assert (late.rule, late.threshold) == ("lr_backoff", 0.0)


def test_accuracy_warmup_skips_the_untrained_best() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    # Epoch 0's untrained model scores high (all background), then real training starts.
    accuracies = [0.9, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8]
    for epoch, accuracy in enumerate(accuracies):
        assert engine.evaluate_epoch(states, EpochReading(epoch=epoch, eval_accuracy=accuracy)) == []
    no_warmup = RuleSet.from_run_config({"monitor": {"accuracy_warmup_epochs": 0}})
    engine, states = RuleEngine(no_warmup), {}
    fired = [t for epoch, acc in enumerate(accuracies)
             for t in engine.evaluate_epoch(states, EpochReading(epoch=epoch, eval_accuracy=acc))]
    assert fired and fired[0].rule == "accuracy_drop"


def test_accuracy_reading_is_configurable() -> None:
    config = {"monitor": {"rules": [{"name": "accuracy_drop", "reading": "epoch.extra.task_accuracy",
                                     "fallback": []}], "accuracy_warmup_epochs": 0}}
    engine, states = RuleEngine(RuleSet.from_run_config(config)), {}
    out = []
    for epoch, (pixel, task) in enumerate([(0.9, 0.6), (0.91, 0.4), (0.92, 0.2)]):
        out += engine.evaluate_epoch(states, EpochReading(epoch=epoch, eval_accuracy=pixel,
                                                          extra={"task_accuracy": task, "fg_accuracy": 0.5}))
    assert out and out[0].metric == "drop(epoch.extra.task_accuracy)"


def test_loss_spike_sigma_and_factor() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    calm = [{"loss": 1.0 + 0.01 * (i % 5)} for i in range(128)]
    assert batches(engine, states, calm, "loss_spike") == []
    (fired,) = batches(engine, states, [{"loss": 1.5}], "loss_spike", start=128)
    assert fired.kind == "fired" and fired.severity == "warning" and fired.metric == "loss"
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    assert batches(engine, states, [{"loss": 2.0}, {"loss": 1.0}], "loss_spike") == []
    (fired,) = batches(engine, states, [{"loss": 25.0}], "loss_spike", start=2)
    assert fired.threshold == 20.0, "10x the largest loss seen, before the sigma window is full"


def test_stream_stale_fires_on_sweep_and_resolves_on_the_next_record() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    engine.evaluate_batch(states, BatchReading(step=1, epoch=0, loss=1.0), now=1000.0)
    assert engine.sweep(states, now=1500.0) == []
    (fired,) = engine.sweep(states, now=1601.0)
    assert (fired.rule, fired.kind, fired.value, fired.threshold) == ("stream_stale", "fired", 601.0, 600.0)
    assert engine.sweep(states, now=1700.0) == [], "fires once"
    (resolved,) = [t for t in engine.evaluate_batch(states, BatchReading(step=2, epoch=0), now=1800.0)
                   if t.rule == "stream_stale"]
    assert resolved.kind == "resolved"
