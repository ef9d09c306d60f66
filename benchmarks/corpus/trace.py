"""One labelled corpus trace and the trainer config it runs under (the REAL SCI-ARC layout).

Why the real layout: the service must find its thresholds where the trainer keeps them
(model.hyperlora_max_norm, training.meta_escalation.*, monitoring.*); a corpus in the seed's
layout would measure a configuration nobody runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

Label = Literal["collapse", "failure", "healthy"]
DROP_POINTS = 0.05  # "accuracy fell 5 points below its best"


@dataclass
class CorpusTrace:
    """A whole run as the trainer would send it, plus its label and the truth needed to score it.

    ``records``: per-batch diagnostic records (all ranks, step order). ``epochs``: epoch summaries
    (one per rank and epoch). ``clean_accuracy``: the noise-free accuracy per epoch (of a failing rank),
    so the "drop" used for scoring is the designed one, not a noisy eval dip. ``asked_epochs``:
    how many epochs the trainer keeps asking the gate (a stale trainer keeps asking after it
    stopped reporting).
    """

    name: str
    kind: str
    label: Label
    onset_epoch: int | None
    config: dict[str, Any]
    records: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    clean_accuracy: list[float]
    asked_epochs: int
    notes: str = ""
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def escalation_start_epoch(self) -> int | None:
        value = self.config.get("training", {}).get("meta_escalation", {}).get("start_epoch")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def reported_epochs(self) -> int:
        return 1 + max((row["epoch"] for row in self.epochs), default=-1)

    def drop_epoch(self) -> int | None:
        """First epoch whose (clean) accuracy is DROP_POINTS below the best so far; None = never."""
        best = float("-inf")
        for epoch, value in enumerate(self.clean_accuracy):
            if value != value:  # NaN: nothing known about that epoch
                continue
            if value <= best - DROP_POINTS + 1e-12:
                return epoch
            best = max(best, value)
        return None

    def records_of(self, epoch: int) -> list[dict[str, Any]]:
        return [row for row in self.records if row["epoch"] == epoch]

    def summaries_of(self, epoch: int) -> list[dict[str, Any]]:
        return [row for row in self.epochs if row["epoch"] == epoch]


REAL_LAYOUT: dict[str, Any] = {
    "model": {"use_hyperlora": True, "hyperlora_max_norm": 1.0, "hyperlora_init_scale": 0.005,
              "hyperlora_scaling": 1.0, "hyperlora_rank": 8, "max_clues": 7, "max_grid_size": 30},
    "training": {
        "max_epochs": 80, "learning_rate": 5.0e-4, "gradient_clip": 1.0, "grad_explosion_threshold": 10.0,
        "grad_explosion_lr_reduction": 0.5, "grad_explosion_cooldown_epochs": 2,
        "meta_learning_start_epoch": 8, "hyperlora_warmup_epochs": 8, "hyperlora_warmup_start_scale": 0.005,
        "hyperlora_warmup_end_scale": 0.05, "temperature_start": 1.0, "temperature_end": 0.5,
        "meta_escalation": {
            "enabled": True, "start_epoch": 25, "ramp_epochs": 12, "schedule": "linear",
            "targets": {"hyperlora_delta_scale": 0.2}, "require_stability": True,
            "max_grad_explosion_events_per_epoch": 2, "max_lr_backoff_events_per_epoch": 2,
            "max_consecutive_nan_streak_per_epoch": 3, "recovery_enabled": True, "recovery_step_per_window": 0.05,
            "late_phase": {"enabled": True, "start_epoch": 50, "max_grad_explosion_events": 0,
                           "max_lr_backoff_events": 0, "max_attention_collapse_events": 0},
        },
    },
    "monitoring": {"lora_norm_warn": 2.0, "lora_norm_critical": 5.0, "lora_norm_kill": 10.0,
                   "attn_max_collapse_threshold": 0.02, "attention_collapse_consecutive_threshold": 2,
                   "nan_batches_abort": 20},
    "logging": {"eval_every": 1},
}


def trainer_config(*, epochs: int, start_epoch: int = 25, max_norm: float = 1.0, late_start: int = 50,
                   warmup_epochs: int = 8, meta_start: int = 8, gradient_clip: float = 1.0,
                   learning_rate: float = 5.0e-4) -> dict[str, Any]:
    """The stable_dev-like trainer YAML (as a dict) with this trace's few differences."""
    config = copy.deepcopy(REAL_LAYOUT)
    config["model"]["hyperlora_max_norm"] = max_norm
    training = config["training"]
    training.update(max_epochs=epochs, hyperlora_warmup_epochs=warmup_epochs, meta_learning_start_epoch=meta_start,
                    gradient_clip=gradient_clip, learning_rate=learning_rate)
    training["meta_escalation"]["start_epoch"] = start_epoch
    training["meta_escalation"]["late_phase"]["start_epoch"] = late_start
    return config


def delta_scale_at(config: dict[str, Any], epoch: int) -> float:
    """The designed HyperLoRA delta-scale schedule (notes §5): warm-up, then the escalation ramp."""
    training = config["training"]
    meta = training["meta_escalation"]
    begin, warm = training["meta_learning_start_epoch"], training["hyperlora_warmup_epochs"]
    low, high = training["hyperlora_warmup_start_scale"], training["hyperlora_warmup_end_scale"]
    if epoch < begin:
        return low
    if epoch < begin + warm:
        return low + (high - low) * (epoch - begin) / warm
    start, ramp = meta["start_epoch"], max(1, meta["ramp_epochs"])
    if epoch < start:
        return high
    progress = min(1.0, (epoch - start) / ramp)
    return high + progress * (meta["targets"]["hyperlora_delta_scale"] - high)
