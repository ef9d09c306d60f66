"""Noise-free levels of every reading at fractional epoch ``t``, one function per trace family.

Figures come from the documented failures (notes on SCI-ARC §6, §9): the seed's collapse
(STABILITY_FIX_TODO: LoRA 1.27 -> 1.80, stop logit 3.1, attention max 0.98 -> 0.005, logits
+-67, FG accuracy 93 -> 79 %) and SCI-ARC's root-cause analysis (LoRA 0.5 -> 1.7, NaN batches
per 10 epochs 15/31/44/60/100, attention 0.97 -> 0.03, accuracy 96 -> 48 %). Healthy levels
follow the recorded tiny RLAN run: LoRA norms proportional to the designed delta scale, low
stop-logit variance early, size-free attention peak ratio 5 -> 17.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks.corpus.trace import delta_scale_at

Levels = dict[str, Any]
NATIVE_CELLS = 900  # the seed's and SCI-ARC's figures are for 30x30 ARC grids


def ramp(t: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, smoothstep in between."""
    if end <= start:
        return 1.0 if t >= start else 0.0
    x = min(1.0, max(0.0, (t - start) / (end - start)))
    return x * x * (3.0 - 2.0 * x)


def geo(a: float, b: float, d: float) -> float:
    """Log-space interpolation (attention maxima and variances move geometrically)."""
    return a * (b / a) ** d


def healthy(config: dict[str, Any], t: float, *, stop_var_end: float = 0.6, lr_warmup_epochs: int = 0) -> Levels:
    """A healthy RLAN run: designed delta-scale ramp, LoRA norm proportional to it."""
    scale = delta_scale_at(config, int(t))
    learned = 1.0 - 0.95 * math.exp(-t / 4.0)  # LoRA per unit delta scale grows from the tiny init
    lr = config["training"]["learning_rate"]
    warm = 1.0 if lr_warmup_epochs <= 0 else min(1.0, 0.002 + t / lr_warmup_epochs)
    slow = math.exp(-t / 10.0)
    return {
        "acc": 0.93 - 0.60 * slow, "eval_acc": 0.92 - 0.60 * slow, "loss": 0.30 + 2.4 * math.exp(-t / 9.0),
        "lr": lr * warm, "delta_scale": scale, "lora": scale * 3.0 * learned,
        "stop_mean": -1.0 + 0.4 * (1.0 - slow), "stop_var": 0.01 + (stop_var_end - 0.01) * (1.0 - math.exp(-t / 20.0)),
        "peak": 5.0 + 12.0 * (1.0 - math.exp(-t / 8.0)), "entropy_norm": 0.80 - 0.30 * (1.0 - math.exp(-t / 8.0)),
        "logit": 3.0 + 27.0 * (1.0 - math.exp(-t / 15.0)),
        "grad": 0.6 + (4.0 if lr_warmup_epochs else 2.0) * math.exp(-t / 5.0),
        "nan_rate": 0.0, "nan_burst": 0,
    }


def seed_collapse(config: dict[str, Any], t: float, onset: float, speed: float = 1.0) -> Levels:
    """The seed's documented collapse; ``onset`` = first epoch of the accuracy fall."""
    lv = healthy(config, t)
    per_unit = lv["delta_scale"] / 0.2
    span = lambda epochs: epochs / speed  # noqa: E731 - a faster collapse compresses every phase
    grow = ramp(t, onset - span(25), onset)
    saturate = ramp(t, onset - span(15), onset - span(5))
    sharpen, fade = ramp(t, onset - span(15), onset - span(10)), ramp(t, onset - span(10), onset)
    att_abs = geo(0.75 + 0.23 * sharpen, 0.005, fade)
    fall = ramp(t, onset, onset + span(8))
    lv.update(
        lora=per_unit * (1.27 + 0.53 * grow),
        stop_mean=lv["stop_mean"] + (3.1 - lv["stop_mean"]) * saturate, stop_var=geo(1.15, 0.01, saturate),
        peak=att_abs / 1.6 * NATIVE_CELLS, entropy_norm=0.5 - 0.3 * sharpen + 0.47 * fade,
        logit=lv["logit"] + (67.0 - lv["logit"]) * ramp(t, onset - span(15), onset),
        acc=lv["acc"] - 0.14 * fall, eval_acc=lv["eval_acc"] - 0.14 * fall,
        loss=lv["loss"] + 0.9 * fall, nan_rate=0.08 * fall, grad=lv["grad"] * (1.0 + 4.0 * fall),
    )
    return lv


# SCI-ARC TRAINING_COLLAPSE_ROOT_CAUSE_ANALYSIS, on its own epoch axis (onset of the fall = 41).
_DOC_ONSET = 41.0
_DOC_LORA = ([0.0, 5.0, 25.0, 35.0, 45.0, 56.0, 200.0], [0.30, 0.50, 0.793, 1.453, 1.714, 1.646, 1.646])
_DOC_NAN_PER_EPOCH = ([5.0, 15.0, 25.0, 35.0, 45.0, 56.0], [1.5, 3.1, 4.4, 6.0, 10.0, 10.0])


def sciarc_collapse(config: dict[str, Any], t: float, onset: float, speed: float = 1.0) -> Levels:
    """SCI-ARC's documented collapse; batches-per-epoch independent (NaN as a fraction of 50 batches)."""
    lv = healthy(config, t)
    tau = _DOC_ONSET + (t - onset) * speed
    sharpen, fade = ramp(tau, 10.0, 40.0), ramp(tau, 41.0, 46.0)
    fall = ramp(tau, 41.0, 61.0)
    att_abs = geo(0.6 + 0.37 * sharpen, 0.03, fade)
    lv.update(
        lora=float(np.interp(tau, *_DOC_LORA)), nan_rate=float(np.interp(tau, *_DOC_NAN_PER_EPOCH)) / 50.0,
        peak=att_abs / 1.6 * NATIVE_CELLS, entropy_norm=(0.38 - 0.29 * sharpen) + (0.97 - 0.09) * fade,
        acc=lv["acc"] + 0.03 - 0.48 * fall, eval_acc=lv["eval_acc"] + 0.03 - 0.48 * fall, loss=lv["loss"] + 1.5 * fall,
        logit=lv["logit"] + 15.0 * fade, grad=lv["grad"] * (1.0 + 3.0 * fade),
    )
    return lv


def lr_blowup(config: dict[str, Any], t: float, onset: float) -> Levels:
    """Learning rate x100 three epochs before the fall: bounded outputs saturate (notes §9)."""
    lv = healthy(config, t)
    hot = 1.0 if t >= onset - 3 else 0.0
    if not hot:
        return lv
    fall = ramp(t, onset, onset + 3)
    lv.update(lr=lv["lr"] * 100.0, grad=300.0 + 2500.0 * ramp(t, onset - 3, onset), lora=10.0 ** (4 + 8 * fall),
              logit=100.0, stop_mean=5.99, stop_var=geo(32.0, 1e-4, ramp(t, onset - 3, onset - 1)),
              peak=max(1.02, lv["peak"] * (1.0 - fall)), acc=lv["acc"] - 0.25 * fall,
              eval_acc=lv["eval_acc"] - 0.6 * fall, loss=lv["loss"] + 3.0 * fall)
    return lv


def nan_bursts(config: dict[str, Any], t: float, onset: float) -> Levels:
    """NaN bursts longer than the gate's streak limit, growing for five epochs before the fall."""
    lv = healthy(config, t)
    if t >= onset - 5:
        fall = ramp(t, onset, onset + 4)
        lv.update(nan_burst=int(5 + (t - onset + 5)), acc=lv["acc"] - 0.2 * fall, eval_acc=lv["eval_acc"] - 0.2 * fall,
                  loss=lv["loss"] + 1.0 * fall, grad=lv["grad"] * 3.0)
    return lv


def stop_saturation(config: dict[str, Any], t: float, onset: float) -> Levels:
    """The stop predictor saturates (logits pinned near +6, variance -> 0), then accuracy falls."""
    lv = healthy(config, t)
    saturate = ramp(t, onset - 12, onset - 6)
    fall = ramp(t, onset, onset + 6)
    lv.update(stop_mean=lv["stop_mean"] + (5.9 - lv["stop_mean"]) * saturate,
              stop_var=geo(lv["stop_var"], 1e-4, saturate), acc=lv["acc"] - 0.10 * fall,
              eval_acc=lv["eval_acc"] - 0.10 * fall, loss=lv["loss"] + 0.5 * fall)
    return lv
