"""Per-batch diagnostic records and epoch summaries as the trainer sends them."""

from __future__ import annotations

from typing import Annotated

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
    # issue 18 (design section 1): readings the RLAN trainer watches, size-free attention
    "attention_max_mean",
    "attention_peak_ratio",
    "attention_entropy_norm",
    "stop_logit_mean",
    "stop_logit_abs_mean",
    "stop_prob_mean",
    "lora_norm_preclamp_mean",
    "lora_norm_preclamp_max",
)

MAX_EXTRA_READINGS = 64
MAX_NAME_LENGTH = 100
MAX_SESSION_LENGTH = 100
MAX_EPOCH_EXTRAS = 64  # keys of an epoch summary's extra
MAX_EPOCH_VECTOR = 64  # numbers in one of its vectors (per-clue lists and the like)

EpochVector = Annotated[list[float], Field(max_length=MAX_EPOCH_VECTOR)]


def check_extra_names(extra: dict[str, object], limit: int, what: str) -> None:
    """Bounded count, printable names of 1-100 characters (shared by record and epoch extras)."""
    if len(extra) > limit:
        raise ValueError(f"at most {limit} {what}")
    for name in extra:
        if not name or len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"{what} names must be 1-{MAX_NAME_LENGTH} characters")
        problem = text_problem(name)
        if problem:
            raise ValueError(f"{what} names {problem}")


class DiagnosticRecord(BaseModel):
    """One training batch's readings. NaN and +-Infinity are accepted as data."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0, le=MAX_INDEX, description=(
        "The global step: one per batch the rank sends, growing within a process (restored from the "
        "checkpoint on resume); unique per (run, rank, segment). A jump of more than MONITOR_MAX_STEP_JUMP "
        "above the rank's last step is refused (422). " + BIG_INDEX_NOTE))
    epoch: int = Field(ge=0, le=MAX_INDEX, description=BIG_INDEX_NOTE)
    rank: int = Field(default=0, ge=0, le=65535, description="Distributed rank that measured it.")
    session: str | None = Field(default=None, min_length=1, max_length=MAX_SESSION_LENGTH, description=(
        "Opaque id of the process that measured it, new at every process start: a new session on a rank "
        "starts a new segment, so a resumed run's rewound steps are evaluated, not taken for late ones."))
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
    attention_max_mean: float | None = Field(default=None, description="Mean over maps of each map's max.")
    attention_peak_ratio: float | None = Field(default=None,
                                               description="Mean of max / (1 / valid cells); 1 = uniform.")
    attention_entropy_norm: float | None = Field(default=None, description="Mean of entropy / ln(valid cells).")
    stop_logit_mean: float | None = None
    stop_logit_abs_mean: float | None = None
    stop_prob_mean: float | None = Field(default=None, description="Mean of sigmoid(stop logits).")
    lora_norm_preclamp_mean: float | None = Field(default=None, description="LoRA delta norm before the clamp.")
    lora_norm_preclamp_max: float | None = None
    extra: dict[str, float | None] = Field(default_factory=dict, description="Further named readings.")

    @field_validator("extra")
    @classmethod
    def _bounded_extra(cls, extra: dict[str, float | None]) -> dict[str, float | None]:
        check_extra_names(extra, MAX_EXTRA_READINGS, "extra readings")
        return extra

    @field_validator("session")
    @classmethod
    def _printable_session(cls, session: str | None) -> str | None:
        problem = text_problem(session) if session is not None else None
        if problem:
            raise ValueError(f"session ids {problem}")
        return session


class DiagnosticBatch(BaseModel):
    """Body of ``POST /api/v1/runs/{run_id}/diagnostics``."""

    model_config = ConfigDict(extra="forbid")

    records: list[DiagnosticRecord] = Field(description="Batches in any order; retries are deduplicated.")


class IngestResult(BaseModel):
    """How many records were stored, how many were already there, how many came too late."""

    accepted: int
    duplicates: int
    last_step: int | None = None
    late: int = Field(default=0, description="Stored but not evaluated: at or below their rank's last evaluated "
                      "(segment, step), e.g. a rewind without a new session or a straggler of an earlier session")
    notes: list[str] = Field(default_factory=list, description="What else happened to this batch, in words "
                             "(late records, new segments, repeated steps)")


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
    extra: dict[str, float | EpochVector] = Field(
        default_factory=dict, description=f"The trainer's further epoch figures: numbers or short lists of numbers "
        f"(at most {MAX_EPOCH_EXTRAS} keys, {MAX_EPOCH_VECTOR} numbers a list; NaN/Infinity are data). Rules read "
        "them as epoch.extra.NAME.")

    @field_validator("extra")
    @classmethod
    def _bounded_extra(cls, extra: dict[str, float | list[float]]) -> dict[str, float | list[float]]:
        check_extra_names(extra, MAX_EPOCH_EXTRAS, "epoch extras")
        return extra


class EpochResult(BaseModel):
    """Whether the epoch summary was new, and the decision after it."""

    accepted: bool
    duplicate: bool
    decision: str
