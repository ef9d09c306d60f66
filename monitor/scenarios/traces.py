"""Deterministic synthetic RLAN training traces: a healthy run and the documented collapse.

Used by tests, demos and backtests. Pure Python (``random.Random`` per rank, seeded), so
the same arguments always give the same trace. Healthy traces are noisy on purpose:
isolated batches cross warning and even pause bounds (never for long), which is exactly
what the rules' ``for`` spans must absorb without flapping.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor.rules.types import BatchReading, EpochReading

Levels = dict[str, Any]
LevelsAt = Callable[[int, float], Levels]  # (rank, fractional epoch) -> noise-free levels
HEALTHY_BANDS: Levels = {
    "lora_band": (1.2, 1.4),
    "stop_band": (0.8, 1.5),
    "att_band": (0.6, 0.95),
    "entropy_band": (2.0, 4.0),
    "logit_band": (0.0, 40.0),
}
COLLAPSE_BANDS: Levels = {
    "lora_band": (1.2, 1.95),
    "stop_band": (0.005, 1.5),
    "att_band": (0.002, 0.995),
    "entropy_band": (2.0, 6.5),
    "logit_band": (0.0, 72.0),
}


@dataclass
class Trace:
    """A whole run: batch records and epoch summaries as the trainer would send them."""

    name: str
    batches: list[dict[str, Any]]
    epochs: list[dict[str, Any]]
    config: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy_drop_epoch(self) -> int | None:
        """First epoch whose accuracy falls (collapse runs only)."""
        return self.metadata.get("accuracy_drop_epoch")

    @property
    def accuracy_drop_step(self) -> int | None:
        """Step of the first batch of :attr:`accuracy_drop_epoch`."""
        epoch = self.accuracy_drop_epoch
        return None if epoch is None else epoch * self.metadata["steps_per_epoch"]


def healthy_run(epochs: int = 80, steps_per_epoch: int = 25, ranks: int = 1, seed: int = 0) -> Trace:
    """Noisy but healthy: accuracy rises to ~93 % and plateaus; nothing drifts."""
    return _build("healthy", epochs, steps_per_epoch, ranks, seed, lambda rank, t: _healthy_levels(t), {})


def collapse_run(
    epochs: int = 80,
    steps_per_epoch: int = 25,
    ranks: int = 1,
    seed: int = 0,
    onset_epoch: int = 45,
    drop_epoch: int = 56,
    collapsing_ranks: Iterable[int] | None = None,
) -> Trace:
    """The documented failure: LoRA drift, stop saturation, attention collapse, then accuracy loss.

    ``collapsing_ranks`` (default: all) lets one rank collapse while the others stay healthy.
    """
    bad = set(range(ranks)) if collapsing_ranks is None else set(collapsing_ranks)

    def levels(rank: int, t: float) -> Levels:
        return _collapse_levels(t, onset_epoch, drop_epoch) if rank in bad else _healthy_levels(t)

    meta = {"collapse_onset_epoch": onset_epoch, "accuracy_drop_epoch": drop_epoch, "collapsing_ranks": sorted(bad)}
    return _build("collapse", epochs, steps_per_epoch, ranks, seed, levels, meta)


def to_readings(trace: Trace) -> tuple[list[BatchReading], list[EpochReading]]:
    """The trace as engine inputs (record dict keys are exactly the reading fields)."""
    return [BatchReading(**row) for row in trace.batches], [EpochReading(**row) for row in trace.epochs]


def _ramp(t: float, start: float, duration: float) -> float:
    """0 before ``start``, 1 after ``start + duration``, smoothstep in between."""
    x = min(1.0, max(0.0, (t - start) / duration))
    return x * x * (3.0 - 2.0 * x)


def _geo(start: float, end: float, d: float) -> float:
    """Log-space interpolation: attention and variances decay geometrically."""
    return start * (end / start) ** d


def _healthy_levels(t: float) -> Levels:
    """Noise-free levels at fractional epoch ``t`` of a healthy run."""
    rise = 1.0 - math.exp(-t / 10.0)
    return {
        **HEALTHY_BANDS,
        "acc": 0.93 - 0.83 * math.exp(-t / 9.0),
        "loss": 0.25 + 2.2 * math.exp(-t / 9.0),
        "lora": 1.2 + 0.08 * (1.0 - math.exp(-t / 15.0)),
        "lora_ratio": 1.6,
        "stop_var": 1.15,
        "att": 0.62 + 0.28 * rise,
        "entropy": 3.6 - 1.0 * rise,
        "logit": 20.0 + 15.0 * (1.0 - math.exp(-t / 20.0)),
        "nan_start": 0.002,
        "nan_continue": 0.0,
        "explode": 0.01,
    }


def _collapse_levels(t: float, onset: int, drop: int) -> Levels:
    """Healthy until ``onset - 5``; attention over-sharpens, then everything degrades."""
    lv = _healthy_levels(t)
    if t < onset - 5:
        return lv
    sharpen, d_lora, d_att = _ramp(t, onset - 5, 5), _ramp(t, onset, 6), _ramp(t, onset, 7)
    d_logit, d_acc = _ramp(t, onset, 9), _ramp(t, drop, 6)
    lv.update(COLLAPSE_BANDS)
    lv.update(
        lora=lv["lora"] + (1.80 - lv["lora"]) * d_lora,
        lora_ratio=1.6 + 0.45 * d_lora,
        stop_var=_geo(lv["stop_var"], 0.01, min(1.0, max(0.0, (t - onset) / 7.0))),
        att=_geo(lv["att"] + (0.98 - lv["att"]) * sharpen, 0.005, d_att),
        entropy=lv["entropy"] + (5.8 - lv["entropy"]) * d_att,
        logit=lv["logit"] + (67.0 - lv["logit"]) * d_logit,
        acc=lv["acc"] - 0.14 * d_acc,
        loss=lv["loss"] + 0.9 * d_acc,
    )
    if t >= drop + 1:
        lv.update(nan_start=0.12, nan_continue=0.75, explode=0.3)
    return lv


def _clip(value: float, band: tuple[float, float]) -> float:
    return min(band[1], max(band[0], value))


def _batch(lv: Levels, rng: random.Random, nan: bool) -> dict[str, Any]:
    """One batch's readings: level + noise, plus rare isolated spikes and gaps."""
    lora = _clip(lv["lora"] * (1 + rng.gauss(0, 0.015)), lv["lora_band"])
    logit = _clip(lv["logit"] * (1 + rng.gauss(0, 0.06)), lv["logit_band"])
    row = {
        "lora_norm_mean": lora,
        "lora_norm_max": lora * lv["lora_ratio"] + abs(rng.gauss(0, 0.08)),
        "stop_logit_var": _clip(lv["stop_var"] * (1 + rng.gauss(0, 0.12)), lv["stop_band"]),
        "attention_max": _clip(lv["att"] * (1 + rng.gauss(0, 0.04)), lv["att_band"]),
        "attention_entropy": _clip(lv["entropy"] + rng.gauss(0, 0.2), lv["entropy_band"]),
        "logit_min": -logit * (0.9 + 0.1 * rng.random()),
        "logit_max": logit,
        "accuracy": _clip(lv["acc"] + rng.gauss(0, 0.025), (0.0, 1.0)),
        "loss": max(0.01, lv["loss"] * (1 + rng.gauss(0, 0.08))),
        "nan_count": float(rng.randint(1, 4)) if nan else 0.0,
        "grad_norm": rng.uniform(12.0, 40.0) if rng.random() < lv["explode"] else rng.lognormvariate(0, 0.3),
    }
    _spike(row, rng)
    if nan:
        row.update(logit_min=math.nan, logit_max=math.nan, loss=math.nan)
    return row


def _spike(row: dict[str, Any], rng: random.Random) -> None:
    """Isolated single-batch excursions past the bounds, and occasional missing probes."""
    if rng.random() < 0.01:
        row["lora_norm_max"] = rng.uniform(3.05, 3.3)
    if rng.random() < 0.02:
        row["stop_logit_var"] = rng.uniform(0.2, 0.45)
    if rng.random() < 0.015:
        row["attention_max"] = rng.uniform(0.15, 0.28)
    if rng.random() < 0.005:
        row.update(attention_max=rng.uniform(0.03, 0.09), attention_entropy=rng.uniform(5.1, 5.5))
    if rng.random() < 0.01:
        row["logit_max"] = rng.uniform(51.0, 60.0)
    if rng.random() < 0.01:
        row.update(attention_max=None, attention_entropy=None)


def _rank_epoch(
    lv_at: Callable[[float], Levels], rank: int, epoch: int, spe: int, rng: random.Random, in_nan: bool
) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """One epoch of one rank: its batch rows, its summary, and whether a NaN streak is open."""
    rows, streak, longest, streaks, explosions = [], 0, 0, 0, 0
    for i in range(spe):
        lv = lv_at(epoch + i / spe)
        in_nan = rng.random() < (lv["nan_continue"] if in_nan else lv["nan_start"])
        streaks += int(in_nan and streak == 0)
        streak = streak + 1 if in_nan else 0
        longest = max(longest, streak)
        row = {"step": epoch * spe + i, "epoch": epoch, "rank": rank, **_batch(lv, rng, in_nan)}
        explosions += int(row["grad_norm"] > 10.0)
        rows.append(row)
    acc = lv_at(epoch + 1.0)["acc"]
    eval_acc = _clip(acc + rng.gauss(0, 0.004), (0.0, 1.0))
    summary = {
        "epoch": epoch,
        "rank": rank,
        "eval_accuracy": eval_acc,
        "train_accuracy": _clip(eval_acc + 0.015 + rng.gauss(0, 0.003), (0.0, 1.0)),
        "grad_explosion_events": explosions,
        "lr_backoff_events": streaks,
        "max_nan_streak": longest,
    }
    return rows, summary, in_nan


def _build(name: str, epochs: int, spe: int, ranks: int, seed: int, levels: LevelsAt, meta: dict[str, Any]) -> Trace:
    """Generate every rank epoch by epoch and interleave them in step order."""
    if epochs < 1 or spe < 1 or ranks < 1:
        raise ValueError("epochs, steps_per_epoch and ranks must be >= 1")
    rngs = [random.Random(f"{name}:{seed}:{rank}") for rank in range(ranks)]
    in_nan = [False] * ranks
    batches: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    for epoch in range(epochs):
        per_rank = []
        for rank in range(ranks):
            rows, summary, in_nan[rank] = _rank_epoch(
                lambda t, r=rank: levels(r, t), rank, epoch, spe, rngs[rank], in_nan[rank]
            )
            per_rank.append(rows)
            summaries.append(summary)
        batches.extend(row for step_rows in zip(*per_rank) for row in step_rows)
    metadata = {"name": name, "seed": seed, "epochs": epochs, "steps_per_epoch": spe, "ranks": ranks, **meta}
    return Trace(name, batches, summaries, _config(epochs, spe, ranks, seed), metadata)


def _config(epochs: int, spe: int, ranks: int, seed: int) -> dict[str, Any]:
    """A realistic RLAN trainer YAML (as loaded into a dict)."""
    return {
        "model": {"name": "rlan", "hidden_dim": 256, "num_heads": 8, "max_grid_size": 30},
        "hyper_lora": {"enabled": True, "rank": 8, "alpha": 16, "lora_max_norm": 3.0, "delta_scale": 1.0},
        "recursive_solver": {"max_steps": 8, "min_steps": 2, "stop_threshold": 0.5, "logit_clamp_threshold": 50.0},
        "meta_escalation": {
            "enabled": True,
            "start_epoch": 30,
            "escalation_rate": 0.1,
            "accuracy_drop_threshold": 0.05,
            "attention_collapse_threshold": 0.1,
        },
        "training": {
            "epochs": epochs,
            "steps_per_epoch": spe,
            "batch_size": 32,
            "learning_rate": 3.0e-4,
            "world_size": ranks,
            "seed": seed,
            "max_consecutive_nan_streak_per_epoch": 3,
            "max_grad_explosion_events_per_epoch": 5,
        },
    }
