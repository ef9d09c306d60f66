"""Logit-range rule: solver logits drifting past the trainer's clamp (+-67 in the collapse).

The trainer clamps at ``recursive_solver.logit_clamp_threshold``; logits beyond it mean
the clamp is doing the work and gradients through it vanish.
"""

from __future__ import annotations

import math

from monitor.rules.state_machine import Observation, Rule
from monitor.rules.thresholds import Thresholds
from monitor.rules.types import BatchReading, RuleState


class LogitRangeRule(Rule):
    """``logit_min < -T`` or ``logit_max > T``; the side that is further out is reported."""

    name = "logit_range"
    metric = "logit_max"
    kind = "batch"

    def observe(self, reading: BatchReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        low, high = reading.logit_min, reading.logit_max
        if low is None and high is None:
            return None
        bound = thresholds.logit_clamp_threshold
        # Excess beyond the bound on each side; NaN is the worst possible excess.
        sides = []
        if high is not None:
            sides.append((_excess(high - bound), Observation(high, bound, False, "logit_max")))
        if low is not None:
            sides.append((_excess(-bound - low), Observation(low, -bound, False, "logit_min")))
        excess, worst = max(sides, key=lambda side: side[0])
        return Observation(worst.value, worst.threshold, excess > 0, worst.metric)


def _excess(amount: float) -> float:
    """NaN sorts above everything, so a NaN side is always reported (and breaches)."""
    return math.inf if math.isnan(amount) else amount
