"""Run bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.schemas.text import StorableStr, check_json_tree

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$"


class RunUpsert(BaseModel):
    """Body of ``PUT /api/v1/runs/{run_id}``; every field optional so a resume can send ``{}``."""

    model_config = ConfigDict(extra="forbid")

    name: StorableStr | None = Field(default=None, max_length=200)
    project: StorableStr | None = Field(default=None, max_length=200)
    config: dict[str, Any] | None = Field(default=None, description="The trainer's YAML config as a dict "
                                          "(finite numbers only; no NUL characters).")
    escalation_start_epoch: int | None = Field(default=None, ge=0, le=10_000_000)

    @field_validator("config")
    @classmethod
    def _storable_config(cls, config: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if config is None else check_json_tree(config, "config")


class RunOut(BaseModel):
    """A run as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    run_id: str
    name: str
    project: str
    config: dict[str, Any]
    escalation_start_epoch: int | None
    created_at: datetime
    updated_at: datetime
    last_step: int | None
    last_epoch: int | None
    record_count: int
    decision: str
    health: str


class RunCreated(RunOut):
    """PUT answer: the run plus whether this call created it."""

    created: bool
    # Which trainer keys gave each threshold, which are defaults, phases, rules added/overridden/disabled.
    config_report: dict[str, Any] | None = None
