"""backtest(): replaying a run under other thresholds moves when (and whether) rules fire."""

from __future__ import annotations

from monitor.backtesting import merge_config
from monitor.rules import BatchReading, EpochReading, RuleSet, backtest
from monitor.scenarios import collapse_run, healthy_run, to_readings
from tests.support.rules import rules_with

COLLAPSE = collapse_run()
HEALTHY = healthy_run()


def config_with(config: dict, **knobs) -> RuleSet:
    """The trace's config with some monitor knobs changed."""
    return RuleSet.from_run_config(merge_config(config, {"monitor": knobs}))


def fired_step(result, rule: str) -> int | None:
    return next((t.step for t in result.transitions if t.rule == rule and t.kind == "fired"), None)


def test_default_thresholds_pause_on_attention_collapse() -> None:
    result = backtest(RuleSet.from_run_config(COLLAPSE.config), *to_readings(COLLAPSE))
    assert result.first_pause is not None and "attention_collapse" in result.first_pause.rules
    assert result.first_pause.step == fired_step(result, "attention_collapse")
    assert result.batches == len(COLLAPSE.batches) and result.epochs == len(COLLAPSE.epochs)
    start, end = result.spans["attention_collapse"][0]
    assert start == result.first_pause.step and end is None


def test_other_thresholds_change_when_rules_fire() -> None:
    batches, epochs = to_readings(COLLAPSE)
    base = RuleSet.from_run_config(COLLAPSE.config)
    default = backtest(base, batches, epochs)
    stricter = backtest(config_with(COLLAPSE.config, attention_collapse_threshold=0.01), batches, epochs)
    slower = backtest(config_with(COLLAPSE.config, batch_for=40), batches, epochs)
    looser = backtest(config_with(COLLAPSE.config, attention_collapse_threshold=0.3), batches, epochs)
    base_step = fired_step(default, "attention_collapse")
    assert fired_step(stricter, "attention_collapse") > base_step
    assert fired_step(slower, "attention_collapse") >= base_step + 30
    assert fired_step(looser, "attention_collapse") < base_step


def test_tight_thresholds_make_a_healthy_run_fire() -> None:
    batches, epochs = to_readings(HEALTHY)
    assert backtest(rules_with(), batches, epochs).transitions == []
    tight = backtest(rules_with(logit_clamp_threshold=25.0, severity={"logit_range": "pause"}), batches, epochs)
    assert fired_step(tight, "logit_range") is not None and tight.first_pause is not None


def test_severity_override_moves_the_first_pause() -> None:
    batches, epochs = to_readings(COLLAPSE)
    base = RuleSet.from_run_config(COLLAPSE.config)
    earlier = backtest(config_with(COLLAPSE.config, severity={"attention_weak": "pause"}), batches, epochs)
    assert earlier.first_pause.rules == ("attention_weak",)
    assert earlier.first_pause.step < backtest(base, batches, epochs).first_pause.step


def test_epoch_summary_applies_after_last_batch_of_its_epoch() -> None:
    batches = [BatchReading(step=s, epoch=s // 5) for s in range(15)]
    epochs = [EpochReading(epoch=e, max_nan_streak=9 if e == 1 else 0) for e in range(3)]
    result = backtest(rules_with(), iter(batches), (e for e in epochs))  # plain iterators: streaming
    kinds = [(t.rule, t.kind, t.step, t.epoch) for t in result.transitions]
    assert kinds == [("nan_streak", "fired", 9, 1)]
    assert result.first_pause.step == 9 and result.first_pause.epoch == 1
    assert result.spans == {"nan_streak": [(9, None)]}, "epoch 2's healthy summary is 1 of 2 needed"


def test_pause_waits_for_escalation_start_epoch() -> None:
    batches = [BatchReading(step=s, epoch=s // 5) for s in range(30)]
    epochs = [EpochReading(epoch=e, max_nan_streak=9) for e in range(6)]
    result = backtest(rules_with(escalation_start_epoch=4), batches, epochs)
    assert result.first_pause.epoch == 4 and result.first_pause.step == 20
    assert fired_step(result, "nan_streak") == 4


def test_spans_merge_ranks() -> None:
    two = collapse_run(ranks=2, epochs=70)
    result = backtest(RuleSet.from_run_config(two.config), *to_readings(two))
    rank_fired = {t.rank for t in result.transitions if t.rule == "attention_collapse" and t.kind == "fired"}
    assert rank_fired == {0, 1} and len(result.spans["attention_collapse"]) == 1


def test_backtest_honours_an_explicit_escalation_start() -> None:
    batches = [BatchReading(step=s, epoch=s // 5) for s in range(30)]
    epochs = [EpochReading(epoch=e, max_nan_streak=9) for e in range(6)]
    result = backtest(rules_with(escalation_start_epoch=1), batches, epochs, start_epoch=5)
    assert result.first_pause.epoch == 5, "the run's own start (PUT field) wins over the config's"
