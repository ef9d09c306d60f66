"""The shape of ``GET /escalation/decision`` answers, for the OpenAPI document.

The endpoint serves the stored JSON text as is; these models describe it (and a test
validates real answers against them). Non-finite numbers are spelled ``"NaN"``,
``"Infinity"`` or ``"-Infinity"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Number = float | Literal["NaN", "Infinity", "-Infinity"] | None


class DecisionReason(BaseModel):
    """One rule's state: why the run pauses, warns, or may soon."""

    rule: str
    metric: str
    value: Number = Field(description="The reading that breached (or last breached) the limit")
    threshold: Number
    since_step: int | None
    since_epoch: int | None
    rank: int
    severity: Literal["pause", "warning"]
    status: Literal["firing", "pending"]


class DecisionAnswer(BaseModel):
    """Pause or continue meta-escalation, with the reasons and recommended remedies."""

    decision: Literal["continue", "pause"]
    health: Literal["ok", "warning", "paused"]
    reasons: list[DecisionReason] = Field(description="Firing pause rules (empty when continuing)")
    warnings: list[DecisionReason] = Field(description="Firing rules that do not pause (all of them before the "
                                           "escalation start epoch)")
    pending: list[DecisionReason] = Field(description="Rules past their limit, not yet for long enough to fire")
    actions: list[dict[str, Any]] = Field(description='Remedies, e.g. {"action": "scale_hyperlora_delta", '
                                          '"factor": 0.5, "because": ["lora_norm"]}')
    note: str | None
    current_epoch: int | None
    current_step: int | None
    for_epoch: int | None = Field(description="The epoch this answer is for: 'may I escalate in epoch "
                                  "for_epoch?' (the query's epoch; default: the last closed epoch + 1)")
    run_id: str
    epoch: int | None
    step: int | None
    escalation_start_epoch: int | None
