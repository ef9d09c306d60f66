"""Stop-predictor rule: the recursive solver's stop logits must keep some spread.

When the stop head saturates (every sample predicts the same stop logit, ~3.1 in the
documented collapse) its batch variance falls towards 0.01 and the solver stops adapting
its number of steps. Early in training the head is untrained, hence the warm-up.
"""

from __future__ import annotations

import math

from monitor.rules.state_machine import Observation, Rule
from monitor.rules.thresholds import Thresholds
from monitor.rules.types import BatchReading, RuleState


class StopSaturationRule(Rule):
    """``stop_logit_var`` must stay above ``stop_logit_var_min`` once warm-up is over."""

    name = "stop_saturation"
    metric = "stop_logit_var"
    kind = "batch"

    def observe(self, reading: BatchReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        value = reading.stop_logit_var
        if value is None or reading.step < thresholds.stop_var_warmup_steps:
            return None
        bound = thresholds.stop_logit_var_min
        return Observation(value, bound, math.isnan(value) or value <= bound)
