"""Epoch summaries: stored once per (run, rank, epoch), listed back with their extras."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.floats import decode_float, encode_tree
from monitor.rules.types import EpochReading
from monitor.schemas.diagnostics import EpochSummary
from monitor.store.models import EpochRecord

_FLOAT_FIELDS = ("eval_accuracy", "train_accuracy")
_COUNT_FIELDS = ("grad_explosion_events", "lr_backoff_events", "max_nan_streak")


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
    values["extra"] = encode_tree(values["extra"]) or None  # JSON columns cannot hold NaN
    session.add(EpochRecord(run_id=run_id, nan_mask=mask, **values))
    return True


def _decode_extra(stored: dict[str, Any] | None) -> dict[str, float | list[float]]:
    """Stored extras with NaN/Infinity restored (scalars and vectors)."""
    return {name: ([decode_float(item) for item in value] if isinstance(value, list) else decode_float(value))
            for name, value in (stored or {}).items()}


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
        extra=_decode_extra(row.extra),
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


def list_epochs(session: Session, run_id: str, *, rank: int | None = None, limit: int = 1000,
                offset: int = 0) -> list[EpochRecord]:
    """Closed epochs in (epoch, rank) order, one page."""
    query = select(EpochRecord).where(EpochRecord.run_id == run_id)
    if rank is not None:
        query = query.where(EpochRecord.rank == rank)
    query = query.order_by(EpochRecord.epoch, EpochRecord.rank).limit(limit).offset(offset)
    return list(session.scalars(query))


def epoch_to_json(row: EpochRecord) -> dict[str, Any]:
    """A stored epoch as the API returns it (NaN and Infinity spelled as strings)."""
    reading = epoch_row_to_reading(row)
    body: dict[str, Any] = {"epoch": row.epoch, "rank": row.rank}
    body.update({name: getattr(reading, name) for name in (*_FLOAT_FIELDS, *_COUNT_FIELDS)})
    body.update(extra=reading.extra, closed_at=row.closed_at.isoformat())
    return encode_tree(body)
