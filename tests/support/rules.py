"""Rule sets for tests: the shipped rules with some of the monitor's knobs changed."""

from __future__ import annotations

from typing import Any

from monitor.rules import RuleSet

BATCH_RULES = ("lora_norm", "lora_norm_critical", "lora_growth", "stop_saturation", "attention_weak", "attention_collapse", "logit_range",
               "loss_spike")
EPOCH_RULES = ("accuracy_drop", "nan_streak", "grad_explosion", "lr_backoff")


def rules_with(**knobs: Any) -> RuleSet:
    """``rules_with(batch_for=3)`` is the config ``{"monitor": {"batch_for": 3}}``."""
    return RuleSet.from_run_config({"monitor": knobs} if knobs else {})
