"""HyperLoRA rules: the adapter delta's norm must stay bounded and must not keep growing.

In the documented collapse the epoch-mean LoRA norm drifted 1.27 -> 1.80 (+42 %) before
attention collapsed, so growth is an early warning even while the norm is under the cap.
"""

from __future__ import annotations

import math

from monitor.rules.state_machine import Observation, Rule, Span, above
from monitor.rules.thresholds import Thresholds
from monitor.rules.types import BatchReading, RuleState


class LoraNormRule(Rule):
    """``lora_norm_max`` must stay below ``hyper_lora.lora_max_norm`` (the trainer's clip)."""

    name = "lora_norm"
    metric = "lora_norm_max"
    kind = "batch"

    def observe(self, reading: BatchReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        value = reading.lora_norm_max
        if value is None:
            return None
        bound = thresholds.lora_max_norm
        # Reaching the cap counts: the trainer clips there, so the norm is pinned.
        return Observation(value, bound, above(value, bound) or value == bound)


class LoraGrowthRule(Rule):
    """Epoch-mean ``lora_norm_mean`` grew more than ``lora_growth_ratio`` over the window.

    Batch readings are folded into a running mean of the current epoch; when the first
    batch of a later epoch arrives the finished mean is compared with the mean from
    ``lora_growth_window_epochs`` epochs earlier. So it observes once per epoch (epoch
    spans apply) and memory holds at most window + 1 means. Non-finite readings are left
    out of the mean; an epoch with no finite reading but some NaN is a breach.
    """

    name = "lora_growth"
    metric = "lora_norm_mean"
    kind = "batch"

    def span(self, thresholds: Thresholds) -> Span:
        return Span(thresholds.epoch_for, thresholds.epoch_resolve)

    def observe(self, reading: BatchReading, state: RuleState, thresholds: Thresholds) -> Observation | None:
        value = reading.lora_norm_mean
        mem = state.memory
        current = mem.get("epoch")
        if current is not None and reading.epoch < current:
            return None  # stray batch of a finished epoch: its mean is already closed
        obs = None
        if current is not None and reading.epoch > current:
            obs = self._close_epoch(mem, thresholds)
        if current is None or reading.epoch > current:
            mem.update(epoch=reading.epoch, sum=0.0, n=0, bad=0)
        if value is not None:
            if math.isfinite(value):
                mem["sum"] += value
                mem["n"] += 1
            else:
                mem["bad"] += 1
        return obs

    def _close_epoch(self, mem: dict, thresholds: Thresholds) -> Observation | None:
        """Fold the finished epoch into the window and compare against its start."""
        ratio_bound = thresholds.lora_growth_ratio
        if mem["n"] == 0:
            return Observation(math.nan, ratio_bound, True) if mem["bad"] else None
        epoch, mean = mem["epoch"], mem["sum"] / mem["n"]
        window = thresholds.lora_growth_window_epochs
        means: list[list[float]] = mem.setdefault("means", [])
        means.append([epoch, mean])
        # Keep exactly one base entry at or before epoch - window, plus the newer ones.
        while len(means) > 1 and means[1][0] <= epoch - window:
            means.pop(0)
        base_epoch, base = means[0]
        if base_epoch > epoch - window or base <= 0:
            return None  # window not yet full (early training) or no usable base
        growth = mean / base - 1.0
        return Observation(growth, ratio_bound, growth > ratio_bound)
