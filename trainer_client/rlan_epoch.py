"""The RLAN trainer's own epoch dicts -> one epoch summary (fields + ``extra``).

Why a module of its own: ``scripts/train_rlan.py`` keeps its epoch figures in several
dicts (``train_epoch``'s ``total_losses`` with its ``diagnostics`` sub-dict, the
``evaluate`` metrics, ``meta_escalation_state``, ``hyper_lora.get_clamp_stats()``), with
well over a hundred keys, some of them sets, dicts or per-batch lists. The monitor
takes five named fields and at most 64 extras (numbers or lists of at most 64 numbers).
This module picks the fields, then the extras the default rules and the dashboards use
first (:data:`PRIORITY_EXTRAS`), then the remaining numeric keys in name order until
the bound; what does not fit or is not numeric is reported, never sent silently wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpochFields", "PRIORITY_EXTRAS", "epoch_fields"]

MAX_EXTRAS, MAX_VECTOR = 64, 64

# (source dict, key in it) -> extra name. Sources: "eval", "state", "clamp", "losses", "diag".
_RENAMED: tuple[tuple[str, str, str], ...] = (
    ("eval", "pixel_accuracy", "eval_pixel_accuracy"),
    ("eval", "task_accuracy", "task_accuracy"),
    ("eval", "fg_accuracy", "fg_accuracy"),
    ("eval", "bg_accuracy", "bg_accuracy"),
    ("state", "hyperlora_delta_scale_current", "hyperlora_delta_scale"),
    ("state", "attention_collapse_events_epoch", "attention_collapse_events_epoch"),
    ("state", "escalation_progress", "escalation_progress"),
    ("clamp", "hit_rate", "clamp_hit_rate"),
    ("clamp", "max_pre_norm", "clamp_max_pre_norm"),
    ("losses", "nan_batches", "nan_batches"),
    ("losses", "total_loss", "total_loss"),
)
PRIORITY_EXTRAS: tuple[str, ...] = (
    "attention_collapse_events_epoch", "stop_predictor_weight_variance", "attn_max_mean", "attn_min_mean",
    "stop_prob_mean", "stop_prob_std", "stop_logits_mean", "stop_logits_std", "lora_norm_ema",
    "lora_norm_max_seen", "lora_norm_warnings", "lora_norm_critical_count", "max_grad_norm_before_clip",
    "grad_norm_before_clip", "centroid_spread", "logits_min", "logits_max", "dsc_entropy_input_mean",
    "clues_used_mean", "padding_pct", "per_clue_entropy", "per_clue_stop_prob", "per_step_loss",
)
"""Diagnostics keys sent before any other (then the rest in name order, up to 64 extras)."""


@dataclass
class EpochFields:
    """Keyword arguments for ``MonitorClient.epoch_end`` plus what was left out and why."""

    fields: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # key -> reason


def epoch_fields(*, train_losses: Mapping[str, Any] | None = None, eval_metrics: Mapping[str, Any] | None = None,
                 meta_escalation_state: Mapping[str, Any] | None = None, clamp_stats: Mapping[str, Any] | None = None,
                 train_accuracy: float | None = None, extra: Mapping[str, Any] | None = None) -> EpochFields:
    """Map the trainer's epoch dicts (any may be None) to the summary's fields and extras."""
    losses = dict(train_losses or {})
    diagnostics = losses.pop("diagnostics", None) or {}
    sources = {"eval": eval_metrics or {}, "state": meta_escalation_state or {}, "clamp": clamp_stats or {},
               "losses": losses, "diag": diagnostics}
    out = EpochFields()
    state = sources["state"]
    out.fields = _drop_none({
        "eval_accuracy": _number(sources["eval"].get("pixel_accuracy")),
        "train_accuracy": _number(train_accuracy),
        "grad_explosion_events": _count(state.get("grad_explosion_events_epoch")),
        "lr_backoff_events": _count(state.get("lr_backoff_events_epoch")),
        "max_nan_streak": _count(_first(state.get("max_nan_streak_epoch"), losses.get("max_consecutive_nan_streak"))),
    })
    candidates: list[tuple[str, Any]] = [(str(k), v) for k, v in (extra or {}).items()]
    candidates += [(name, sources[src][key]) for src, key, name in _RENAMED if key in sources[src]]
    candidates += [(key, diagnostics[key]) for key in PRIORITY_EXTRAS if key in diagnostics]
    candidates += sorted((str(k), v) for k, v in diagnostics.items() if k not in PRIORITY_EXTRAS)
    _fill(out, candidates)
    return out


def _fill(out: EpochFields, candidates: Iterable[tuple[str, Any]]) -> None:
    """Add usable extras in order until the bound; record every key left out with its reason."""
    for name, value in candidates:
        if name in out.extra or name in out.left_out:
            continue
        encoded = _extra_value(value)
        if encoded is None:
            out.left_out[name] = "not a number or a list of numbers"
        elif isinstance(encoded, list) and len(encoded) > MAX_VECTOR:
            out.left_out[name] = f"a list of {len(encoded)} numbers (at most {MAX_VECTOR})"
        elif len(out.extra) >= MAX_EXTRAS:
            out.left_out[name] = f"more than {MAX_EXTRAS} extras"
        else:
            out.extra[name] = encoded


def _extra_value(value: Any) -> float | list[float] | None:
    """A float, a list of floats (tensors/arrays via ``tolist``), or None if it is neither."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (list, tuple)):
        try:
            value = tolist()
        except Exception:  # noqa: BLE001 - unreadable: not a number
            return None
    if isinstance(value, (list, tuple)):
        numbers = [_number(v) for v in value]
        return None if any(n is None for n in numbers) else numbers  # type: ignore[return-value]
    return _number(value)


def _number(value: Any) -> float | None:
    """``float(value)`` for real numbers (bools as 0/1, NaN kept), else None."""
    if value is None or isinstance(value, (str, bytes, Mapping, set, frozenset, list, tuple)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _count(value: Any) -> int | None:
    """A non-negative integral count, else None (the trainer sometimes keeps counts as floats)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0 or not number.is_integer():
        return None
    return int(number)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
