"""Attention rules: a weak peak is a warning, a collapsed (near-uniform) one pauses.

Collapse shows on two readings: the attention peak falls (0.98 -> 0.005 in the documented
failure) and the entropy rises. Either alone is enough; the one that breached is reported.
"""

from __future__ import annotations

from monitor.rules.state_machine import Observation, Rule, above, below
from monitor.rules.thresholds import Thresholds
from monitor.rules.types import BatchReading, RuleState


class AttentionWeakRule(Rule):
    """``attention_max`` below ``attention_healthy_min`` (0.3): focus is fading."""

    name = "attention_weak"
    metric = "attention_max"
    kind = "batch"

    def observe(self, reading: BatchReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        value = reading.attention_max
        if value is None:
            return None
        bound = thresholds.attention_healthy_min
        return Observation(value, bound, below(value, bound))


class AttentionCollapseRule(Rule):
    """``attention_max`` below the collapse threshold OR entropy above ``attention_entropy_max``."""

    name = "attention_collapse"
    metric = "attention_max"
    kind = "batch"

    def observe(self, reading: BatchReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        peak, entropy = reading.attention_max, reading.attention_entropy
        peak_obs = entropy_obs = None
        if peak is not None:
            bound = thresholds.attention_collapse_threshold
            peak_obs = Observation(peak, bound, below(peak, bound), "attention_max")
        if entropy is not None:
            bound = thresholds.attention_entropy_max
            entropy_obs = Observation(entropy, bound, above(entropy, bound), "attention_entropy")
        if peak_obs is not None and (peak_obs.breached or entropy_obs is None or not entropy_obs.breached):
            return peak_obs
        return entropy_obs
