"""Accuracy-drop rule: the smoothed epoch accuracy fell too far below its best.

An EMA (not raw epoch accuracy) so one bad eval does not pause a run, and the drop is
measured from the best EMA seen, so a slow slide is caught as well as a sudden one.
"""

from __future__ import annotations

import math

from monitor.rules.state_machine import Observation, Rule
from monitor.rules.thresholds import Thresholds
from monitor.rules.types import EpochReading, RuleState


class AccuracyDropRule(Rule):
    """``best_EMA - EMA > accuracy_drop_threshold``; EMA of eval (else train) accuracy.

    ``EMA = decay * EMA + (1 - decay) * accuracy``, starting at the first accuracy. A NaN
    accuracy is a breach but is kept out of the EMA (it would poison it for good).
    Accuracies are fractions in [0, 1], like the threshold.
    """

    name = "accuracy_drop"
    metric = "accuracy_ema_drop"
    kind = "epoch"

    def observe(self, reading: EpochReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        accuracy = reading.eval_accuracy if reading.eval_accuracy is not None else reading.train_accuracy
        if accuracy is None:
            return None
        bound = thresholds.accuracy_drop_threshold
        if not math.isfinite(accuracy):
            return Observation(math.nan, bound, True)
        mem = state.memory
        ema = mem.get("ema")
        decay = thresholds.accuracy_ema_decay
        ema = accuracy if ema is None else decay * ema + (1.0 - decay) * accuracy
        best = max(mem.get("best_ema", ema), ema)
        mem.update(ema=ema, best_ema=best)
        drop = best - ema
        return Observation(drop, bound, drop > bound)
