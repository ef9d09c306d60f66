"""Epoch gate rules: the trainer's own per-epoch limits on NaN streaks and grad explosions.

The trainer counts these events itself (it backs off the learning rate on them); the
monitor pauses meta-escalation when an epoch exceeds the limits the config allows.
"""

from __future__ import annotations

from monitor.rules.state_machine import Observation, Rule
from monitor.rules.thresholds import Thresholds
from monitor.rules.types import EpochReading, RuleState


class NanStreakRule(Rule):
    """``max_nan_streak`` above ``max_consecutive_nan_streak_per_epoch``."""

    name = "nan_streak"
    metric = "max_nan_streak"
    kind = "epoch"

    def observe(self, reading: EpochReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        value = reading.max_nan_streak
        if value is None:
            return None
        bound = thresholds.max_consecutive_nan_streak_per_epoch
        return Observation(float(value), float(bound), value > bound)


class GradExplosionRule(Rule):
    """``grad_explosion_events`` above ``max_grad_explosion_events_per_epoch``."""

    name = "grad_explosion"
    metric = "grad_explosion_events"
    kind = "epoch"

    def observe(self, reading: EpochReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        value = reading.grad_explosion_events
        if value is None:
            return None
        bound = thresholds.max_grad_explosion_events_per_epoch
        return Observation(float(value), float(bound), value > bound)
