"""Epoch summaries: stored once per (run, rank, epoch)."""

from __future__ import annotations

import math
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.rules.types import EpochReading
from monitor.schemas.diagnostics import EpochSummary
from monitor.store.models import EpochRecord

_FLOAT_FIELDS = ("eval_accuracy", "train_accuracy")


def insert_epoch(session: Session, run_id: str, summary: EpochSummary) -> bool:
    """Store the summary; False when this (rank, epoch) was already closed (a retry)."""
    existing = session.scalars(
        select(EpochRecord.id).where(
            EpochRecord.run_id == run_id,
            EpochRecord.rank == summary.rank,
            EpochRecord.epoch == summary.epoch,
        )
    ).first()
    if existing is not None:
        return False
    values = summary.model_dump()
    mask = 0
    for bit, name in enumerate(_FLOAT_FIELDS):
        if values[name] is not None and math.isnan(values[name]):
            mask |= 1 << bit
            values[name] = None
    session.add(EpochRecord(run_id=run_id, nan_mask=mask, **values))
    return True


def epoch_row_to_reading(row: EpochRecord) -> EpochReading:
    """Rule-engine view of a stored epoch (NaN restored)."""
    mask = row.nan_mask or 0
    floats = {
        name: (math.nan if mask & (1 << bit) else getattr(row, name)) for bit, name in enumerate(_FLOAT_FIELDS)
    }
    return EpochReading(
        epoch=row.epoch,
        rank=row.rank,
        grad_explosion_events=row.grad_explosion_events,
        lr_backoff_events=row.lr_backoff_events,
        max_nan_streak=row.max_nan_streak,
        **floats,
    )


def summary_to_reading(summary: EpochSummary) -> EpochReading:
    """Rule-engine view of an incoming summary."""
    return EpochReading(**summary.model_dump())


def iter_epoch_readings(session: Session, run_id: str) -> Iterator[EpochReading]:
    """All closed epochs of a run in (epoch, rank) order."""
    query = select(EpochRecord).where(EpochRecord.run_id == run_id).order_by(EpochRecord.epoch, EpochRecord.rank)
    for row in session.scalars(query):
        yield epoch_row_to_reading(row)


def list_epochs(session: Session, run_id: str) -> list[EpochRecord]:
    """Closed epochs for display."""
    query = select(EpochRecord).where(EpochRecord.run_id == run_id).order_by(EpochRecord.epoch, EpochRecord.rank)
    return list(session.scalars(query))
