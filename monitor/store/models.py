"""SQLAlchemy 2.0 models. Every change here needs an Alembic migration in ``migrations/``.

Readings are stored as nullable doubles; SQLite turns NaN into NULL, so a per-row
``nan_mask`` bit marks readings that were NaN (the value column then holds NULL).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware timestamps on every backend (SQLite drops the zone; we put UTC back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    """Timezone-aware now, for defaults."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


Base.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ApiToken(Base):
    """A bearer token created with ``monitor token create``; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Run(Base):
    """A training run; its config holds the trainer's YAML (thresholds included)."""

    __tablename__ = "runs"
    run_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    project: Mapped[str] = mapped_column(String(200), default="default")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # SHA-256 of the config's canonical JSON (monitor.schemas.config_tree): ingestion looks
    # thresholds up by it instead of loading and re-reading the config (NULL: stored before 0005).
    config_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    escalation_start_epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The highest epoch closed by an epoch summary (any rank): the escalation question's
    # default epoch is the one after it.
    closed_epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    record_count: Mapped[int] = mapped_column(BigInteger, default=0)
    decision: Mapped[str] = mapped_column(String(16), default="continue")
    health: Mapped[str] = mapped_column(String(16), default="ok")
    # The whole GET /escalation/decision answer as JSON text, rewritten by every transaction
    # that changes its inputs (ingest, epoch, PUT): the endpoint serves it with one key lookup.
    decision_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Incremented with every rewrite of decision_body (monitor.store.decision_board orders by it).
    decision_version: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Diagnostic(Base):
    """One batch of one rank.

    Unique per (run, rank, segment, step); the index puts step before segment so that step
    windows (charts, dedupe) stay range scans whatever the number of segments.
    """

    __tablename__ = "diagnostics"
    __table_args__ = (UniqueConstraint("run_id", "rank", "step", "segment"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(BigInteger)
    segment: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    epoch: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[float | None] = mapped_column(Double, nullable=True)
    lora_norm_mean: Mapped[float | None] = mapped_column(Double, nullable=True)
    lora_norm_max: Mapped[float | None] = mapped_column(Double, nullable=True)
    stop_logit_var: Mapped[float | None] = mapped_column(Double, nullable=True)
    attention_max: Mapped[float | None] = mapped_column(Double, nullable=True)
    attention_entropy: Mapped[float | None] = mapped_column(Double, nullable=True)
    logit_min: Mapped[float | None] = mapped_column(Double, nullable=True)
    logit_max: Mapped[float | None] = mapped_column(Double, nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    loss: Mapped[float | None] = mapped_column(Double, nullable=True)
    nan_count: Mapped[float | None] = mapped_column(Double, nullable=True)
    grad_norm: Mapped[float | None] = mapped_column(Double, nullable=True)
    attention_max_mean: Mapped[float | None] = mapped_column(Double, nullable=True)
    attention_peak_ratio: Mapped[float | None] = mapped_column(Double, nullable=True)
    attention_entropy_norm: Mapped[float | None] = mapped_column(Double, nullable=True)
    stop_logit_mean: Mapped[float | None] = mapped_column(Double, nullable=True)
    stop_logit_abs_mean: Mapped[float | None] = mapped_column(Double, nullable=True)
    stop_prob_mean: Mapped[float | None] = mapped_column(Double, nullable=True)
    lora_norm_preclamp_mean: Mapped[float | None] = mapped_column(Double, nullable=True)
    lora_norm_preclamp_max: Mapped[float | None] = mapped_column(Double, nullable=True)
    nan_mask: Mapped[int] = mapped_column(Integer, default=0)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class RunSegment(Base):
    """A stretch of one rank's steps measured by one process (session), in order of start.

    A new session on a rank opens the next segment: a resumed trainer's steps rewind to
    its checkpoint, and ordering readings by (segment, step) keeps evaluating them.
    """

    __tablename__ = "run_segments"
    __table_args__ = (UniqueConstraint("run_id", "rank", "segment"), UniqueConstraint("run_id", "rank", "session"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer, default=0)
    segment: Mapped[int] = mapped_column(Integer, default=0)
    session: Mapped[str | None] = mapped_column(String(100), nullable=True)  # None: records without one
    first_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EpochRecord(Base):
    """An epoch closed by one rank, with the figures the epoch gates read."""

    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("run_id", "rank", "epoch"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer, default=0)
    epoch: Mapped[int] = mapped_column(BigInteger)
    eval_accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    train_accuracy: Mapped[float | None] = mapped_column(Double, nullable=True)
    grad_explosion_events: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lr_backoff_events: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_nan_streak: Mapped[int | None] = mapped_column(Integer, nullable=True)
    nan_mask: Mapped[int] = mapped_column(Integer, default=0)
    # {name: number | [numbers]}, NaN/Infinity spelled as strings (monitor.floats)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleStateRow(Base):
    """Stored state of one rule for one rank, so every process answers the same."""

    __tablename__ = "rule_states"
    __table_args__ = (UniqueConstraint("run_id", "rule", "rank"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="ok")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Digest of the rule's definition + resolved params the state was built under (NULL: before 0007).
    digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleEvent(Base):
    """A rule fired or resolved (the history behind the dashboard's shaded spans)."""

    __tablename__ = "rule_events"
    __table_args__ = (Index("ix_rule_events_run_id_id", "run_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    rule: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    # The expression the rule actually read (e.g. "growth(lora_norm_mean / extra.hyperlora_delta_scale)").
    metric: Mapped[str] = mapped_column(String(200))
    value: Mapped[str | None] = mapped_column(String(40), nullable=True)
    threshold: Mapped[float | None] = mapped_column(Double, nullable=True)
    step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DecisionRecord(Base):
    """A change of the run's escalation decision (the dashboard's decision timeline)."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_run_id_id", "run_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    epoch: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RunEvent(Base):
    """Something done to a run rather than measured on it (``config.changed``), for its history."""

    __tablename__ = "run_events"
    __table_args__ = (Index("ix_run_events_run_id_id", "run_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Webhook(Base):
    """A subscriber URL; the secret signs payloads and is never returned by the API."""

    __tablename__ = "webhooks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    format: Mapped[str] = mapped_column(String(16), default="standard")
    run_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """Outbox row: written with the rule state, sent later by the delivery worker."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
