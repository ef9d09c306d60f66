"""Plain data the rule engine works on: readings in, states and transitions out.

No I/O here: the store turns rows into these and back, so rules stay pure functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

RuleStatus = Literal["ok", "pending", "firing"]
Severity = Literal["warning", "pause"]
TransitionKind = Literal["fired", "resolved"]


@dataclass(slots=True)
class BatchReading:
    """One stored per-batch record; a missing reading is None, NaN stays NaN.

    Not frozen, on purpose: a frozen dataclass sets each of its 20 fields through
    ``object.__setattr__`` (4.6 us a record against 1.2 us here), and one is built per
    stored record. Treat it as read-only all the same.
    """

    step: int
    epoch: int
    rank: int = 0
    # Where the rank's steps started again (a resumed process): the engine orders readings
    # by (segment, step), so a rewound segment is evaluated, not taken for late readings.
    segment: int = 0
    lora_norm_mean: float | None = None
    lora_norm_max: float | None = None
    stop_logit_var: float | None = None
    attention_max: float | None = None
    attention_entropy: float | None = None
    logit_min: float | None = None
    logit_max: float | None = None
    accuracy: float | None = None
    loss: float | None = None
    nan_count: float | None = None
    grad_norm: float | None = None
    # Issue 18 readings (design section 1): size-free attention, stop means, pre-clamp LoRA norm.
    attention_max_mean: float | None = None
    attention_peak_ratio: float | None = None
    attention_entropy_norm: float | None = None
    stop_logit_mean: float | None = None
    stop_logit_abs_mean: float | None = None
    stop_prob_mean: float | None = None
    lora_norm_preclamp_mean: float | None = None
    lora_norm_preclamp_max: float | None = None
    # The trainer's own readings (``extra.NAME`` in rule expressions).
    extra: Mapping[str, float | None] | None = None


@dataclass(slots=True)
class EpochReading:
    """One closed epoch of one rank."""

    epoch: int
    rank: int = 0
    eval_accuracy: float | None = None
    train_accuracy: float | None = None
    grad_explosion_events: int | None = None
    lr_backoff_events: int | None = None
    max_nan_streak: int | None = None
    # ``epoch.extra.NAME``: a scalar or a short vector (``max(..)``/``min(..)``/``mean(..)``).
    extra: Mapping[str, float | list[float] | None] | None = None


@dataclass
class RuleState:
    """Where one rule stands for one rank (stored per (run, rule, rank)).

    ``memory`` holds the rule's own JSON-serialisable working state (EMA, best, windows)
    so evaluation is incremental and survives restarts.
    """

    rule: str
    rank: int = 0
    status: RuleStatus = "ok"
    since_step: int | None = None
    since_epoch: int | None = None
    breach_count: int = 0
    stable_count: int = 0
    value: float | None = None
    threshold: float | None = None
    last_step: int | None = None
    last_segment: int = 0  # the segment of last_step
    last_epoch: int | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    # Digest of the rule's definition + resolved params; a change resets the state.
    definition_id: str | None = None


@dataclass(frozen=True)
class RuleTransition:
    """A rule fired or resolved: becomes a rule event, an outbox row and a webhook."""

    rule: str
    rank: int
    kind: TransitionKind
    severity: Severity
    metric: str
    value: float | None
    threshold: float | None
    step: int | None
    epoch: int | None
    note: str | None = None
