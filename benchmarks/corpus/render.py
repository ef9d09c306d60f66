"""Turn noise-free levels into what a trainer sends: per-batch records and epoch summaries.

Deterministic: one seeded numpy Generator per trace, drawn in a fixed order. Grid sizes only
change the size-dependent readings (attention_max, attention_max_mean, attention_entropy);
the size-free ones (attention_peak_ratio, attention_entropy_norm) follow the levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.corpus.levels import Levels
from benchmarks.corpus.trace import CorpusTrace, Label, trainer_config

LevelsFn = Callable[[dict[str, Any], float, bool], Levels]  # (config, fractional epoch, collapsing rank?)


@dataclass(frozen=True)
class Spec:
    """How to draw one trace; ``bad_ranks`` None = every rank follows the failure."""

    name: str
    kind: str
    label: Label
    onset: int | None
    levels: LevelsFn
    epochs: int = 80
    batches: int = 25
    ranks: int = 1
    bad_ranks: tuple[int, ...] | None = None
    grids: tuple[tuple[int, int], ...] = ((30, 30),)
    noise: float = 1.0
    seed: int = 0
    eval_size: int = 4000
    stop_after: int | None = None
    loss_spikes: float = 0.0
    nan_skips: float = 0.0
    config_kw: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    notes: str = ""


def render(spec: Spec) -> CorpusTrace:
    """The trace of ``spec`` (same spec, same trace, bit for bit)."""
    rng = np.random.default_rng(spec.seed)
    config = trainer_config(epochs=spec.epochs, **spec.config_kw)
    bad = set(range(spec.ranks)) if spec.bad_ranks is None else set(spec.bad_ranks)
    reported = spec.epochs if spec.stop_after is None else spec.stop_after
    records: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    cooldown = [0] * spec.ranks
    for epoch in range(reported):
        rows = [_epoch_batches(spec, config, rng, epoch, rank, rank in bad) for rank in range(spec.ranks)]
        for b in range(spec.batches):
            records.extend(rows[rank][b] for rank in range(spec.ranks))
        for rank in range(spec.ranks):
            summary, cooldown[rank] = _summary(spec, config, rng, epoch, rank, rank in bad, rows[rank], cooldown[rank])
            summaries.append(summary)
    # the failing ranks' accuracy is what falls (a healthy rank beside it hides nothing)
    clean = [spec.levels(config, epoch + 1.0, bool(bad))["eval_acc"] for epoch in range(spec.epochs)]
    return CorpusTrace(spec.name, spec.kind, spec.label, spec.onset, config, records, summaries, clean,
                       asked_epochs=spec.epochs, notes=spec.notes, tags=spec.tags,
                       meta={"batches_per_epoch": spec.batches, "ranks": spec.ranks, "collapsing_ranks": sorted(bad),
                             "grids": [list(g) for g in spec.grids], "noise": spec.noise, "seed": spec.seed})


def _nan_mask(spec: Spec, rng: np.random.Generator, lv: Levels) -> np.ndarray:
    """Which batches of the epoch skip for NaN: isolated ones plus, if asked, one burst."""
    mask = rng.random(spec.batches) < (lv["nan_rate"] + spec.nan_skips)
    burst = min(int(lv["nan_burst"]), spec.batches)
    if burst:
        first = int(rng.integers(0, spec.batches - burst + 1))
        mask[first:first + burst] = True
    return mask


def _epoch_batches(spec: Spec, config: dict[str, Any], rng: np.random.Generator, epoch: int, rank: int,
                   bad: bool) -> list[dict[str, Any]]:
    nan = _nan_mask(spec, rng, spec.levels(config, epoch + 0.5, bad))
    rows = []
    for b in range(spec.batches):
        t = epoch + b / spec.batches
        lv = spec.levels(config, t, bad)
        h, w = spec.grids[int(rng.integers(0, len(spec.grids)))]
        rows.append(_batch(spec, config, rng, lv, epoch * spec.batches + b, epoch, rank, (h, w), bool(nan[b])))
    return rows


def _batch(spec: Spec, config: dict[str, Any], rng: np.random.Generator, lv: Levels, step: int, epoch: int,
           rank: int, grid: tuple[int, int], nan: bool) -> dict[str, Any]:
    z = rng.normal(size=8) * spec.noise
    cells = grid[0] * grid[1]
    max_norm = config["model"]["hyperlora_max_norm"]
    spike = rng.random() < spec.loss_spikes
    pre_mean = lv["lora"] * math.exp(0.03 * z[0])
    pre_max = pre_mean * (1.25 + 0.1 * rng.random())
    peak = min(float(cells), max(1.0, lv["peak"] * math.exp(0.1 * z[1])))
    entropy_norm = min(1.0, max(0.0, lv["entropy_norm"] + 0.02 * z[2]))
    stop_var = lv["stop_var"] * math.exp(0.2 * z[3])
    stop_mean = lv["stop_mean"] + 0.05 * z[4]
    logit = min(100.0, lv["logit"] * math.exp(0.05 * z[5]))
    grad = lv["grad"] * math.exp(0.25 * z[6]) * (3.0 if spike else 1.0)
    row: dict[str, Any] = {
        "step": step, "epoch": epoch, "rank": rank,
        "loss": lv["loss"] * math.exp(0.08 * z[7]) * (6.0 if spike else 1.0),
        "accuracy": min(1.0, max(0.0, lv["acc"] + 0.02 * float(rng.normal()) * spec.noise)),
        "nan_count": 0.0, "grad_norm": grad, "logit_max": logit, "logit_min": -0.9 * logit,
        "lora_norm_preclamp_mean": pre_mean, "lora_norm_preclamp_max": pre_max,
        "lora_norm_mean": min(pre_mean, max_norm), "lora_norm_max": min(pre_max, max_norm),
        "stop_logit_var": stop_var, "stop_logit_mean": stop_mean,
        "stop_logit_abs_mean": max(abs(stop_mean), 0.8 * math.sqrt(stop_var)),
        "stop_prob_mean": 1.0 / (1.0 + math.exp(-stop_mean)),
        "attention_peak_ratio": peak, "attention_entropy_norm": entropy_norm,
        "attention_max_mean": peak / cells, "attention_max": min(1.0, 1.6 * peak / cells),
        "attention_entropy": entropy_norm * math.log(cells),
        "extra": {"hyperlora_delta_scale": lv["delta_scale"], "lr": lv["lr"], "grid_h": float(grid[0]),
                  "grid_w": float(grid[1]), "nan_skipped": 1.0 if nan else 0.0},
    }
    if nan:  # the trainer skips the batch: loss and gradient are not finite, no accuracy computed
        row.update(loss=float("nan"), grad_norm=float("nan"), nan_count=3.0)
        del row["accuracy"]
    return row


def _summary(spec: Spec, config: dict[str, Any], rng: np.random.Generator, epoch: int, rank: int, bad: bool,
             rows: list[dict[str, Any]], cooldown: int) -> tuple[dict[str, Any], int]:
    """Epoch summary with the trainer's own counters (explosion test on the epoch max grad norm)."""
    lv = spec.levels(config, epoch + 1.0, bad)
    p = lv["eval_acc"]
    eval_acc = min(1.0, max(0.0, p + float(rng.normal()) * math.sqrt(max(p * (1 - p), 1e-4) / spec.eval_size)))
    accs = [row["accuracy"] for row in rows if "accuracy" in row]
    grads = [row["grad_norm"] for row in rows if math.isfinite(row["grad_norm"])]
    training = config["training"]
    limit = training["grad_explosion_threshold"] * training["gradient_clip"]
    exploded = int(cooldown == 0 and bool(grads) and max(grads) > limit)
    streak = best = 0
    for row in rows:
        streak = streak + 1 if row["extra"]["nan_skipped"] else 0
        best = max(best, streak)
    nan_batches = sum(int(row["extra"]["nan_skipped"]) for row in rows)
    summary = {"epoch": epoch, "rank": rank, "eval_accuracy": eval_acc,
               "train_accuracy": float(np.mean(accs)) if accs else None,
               "grad_explosion_events": exploded, "lr_backoff_events": exploded, "max_nan_streak": best,
               "extra": {"fg_accuracy": eval_acc, "eval_pixel_accuracy": eval_acc, "lr": lv["lr"],
                         "hyperlora_delta_scale": lv["delta_scale"], "nan_batches": float(nan_batches),
                         "num_batches": float(len(rows))}}
    next_cooldown = training["grad_explosion_cooldown_epochs"] if exploded else max(0, cooldown - 1)
    return summary, next_cooldown
