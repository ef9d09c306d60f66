"""Per-batch diagnostic records and epoch summaries as the trainer sends them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.schemas.text import text_problem

MAX_INDEX = 2**62  # fits a signed 64-bit column with room to spare
# Answers carry steps and epochs exactly (JSON numbers have no size limit); JavaScript's
# JSON.parse reads numbers as doubles, exact only up to 2^53-1 (docs/reliability.md, 16.9).
BIG_INDEX_NOTE = "Exact in the JSON text up to 2^62; JavaScript clients should read values above 2^53-1 as BigInt."
MAX_COUNT = 2**31 - 1  # epoch counts go to INTEGER columns (32-bit on PostgreSQL)

# The per-batch readings, in column order. Any of them may be missing in a record.
READING_NAMES: tuple[str, ...] = (
    "lora_norm_mean",
    "lora_norm_max",
    "stop_logit_var",
    "attention_max",
    "attention_entropy",
    "logit_min",
    "logit_max",
    "accuracy",
    "loss",
    "nan_count",
    "grad_norm",
)

MAX_EXTRA_READINGS = 64
MAX_NAME_LENGTH = 100


class DiagnosticRecord(BaseModel):
    """One training batch's readings. NaN and +-Infinity are accepted as data."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0, le=MAX_INDEX, description="Global batch index; unique per (run, rank). " + BIG_INDEX_NOTE)
    epoch: int = Field(ge=0, le=MAX_INDEX, description=BIG_INDEX_NOTE)
    rank: int = Field(default=0, ge=0, le=65535, description="Distributed rank that measured it.")
    timestamp: float | None = Field(default=None, ge=0, le=1e11, description="Unix seconds.")
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
    extra: dict[str, float | None] = Field(default_factory=dict, description="Further named readings.")

    @field_validator("extra")
    @classmethod
    def _bounded_extra(cls, extra: dict[str, float | None]) -> dict[str, float | None]:
        if len(extra) > MAX_EXTRA_READINGS:
            raise ValueError(f"at most {MAX_EXTRA_READINGS} extra readings per record")
        for name in extra:
            if not name or len(name) > MAX_NAME_LENGTH:
                raise ValueError(f"extra reading names must be 1-{MAX_NAME_LENGTH} characters")
            problem = text_problem(name)
            if problem:
                raise ValueError(f"extra reading names {problem}")
        return extra


class DiagnosticBatch(BaseModel):
    """Body of ``POST /api/v1/runs/{run_id}/diagnostics``."""

    model_config = ConfigDict(extra="forbid")

    records: list[DiagnosticRecord] = Field(description="Batches in any order; retries are deduplicated.")


class IngestResult(BaseModel):
    """How many records were stored and how many were already there."""

    accepted: int
    duplicates: int
    last_step: int | None = None


class EpochSummary(BaseModel):
    """Body of ``POST /api/v1/runs/{run_id}/epochs``: closes one epoch of one rank."""

    model_config = ConfigDict(extra="forbid")

    epoch: int = Field(ge=0, le=MAX_INDEX, description=BIG_INDEX_NOTE)
    rank: int = Field(default=0, ge=0, le=65535)
    eval_accuracy: float | None = Field(default=None, description="Accuracy the EMA rule follows.")
    train_accuracy: float | None = Field(default=None, description="Used when eval_accuracy is missing.")
    grad_explosion_events: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    lr_backoff_events: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    max_nan_streak: int | None = Field(default=None, ge=0, le=MAX_COUNT)


class EpochResult(BaseModel):
    """Whether the epoch summary was new, and the decision after it."""

    accepted: bool
    duplicate: bool
    decision: str
