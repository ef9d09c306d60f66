"""Storing per-batch records idempotently and reading them back."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, select
from sqlalchemy.orm import Session

from monitor.floats import decode_float, encode_tree
from monitor.rules.types import BatchReading
from monitor.schemas.diagnostics import READING_NAMES, DiagnosticRecord
from monitor.store.models import Diagnostic, Run

NAN_BIT = {name: 1 << index for index, name in enumerate(READING_NAMES)}


@dataclass(frozen=True)
class InsertOutcome:
    """The records that were new (in step order) and how many were already stored."""

    new_records: list[DiagnosticRecord]
    duplicates: int


def record_to_row(run_id: str, record: DiagnosticRecord) -> dict[str, Any]:
    """Column values for one record; NaN readings become NULL plus a nan_mask bit."""
    row: dict[str, Any] = {
        "run_id": run_id,
        "rank": record.rank,
        "step": record.step,
        "epoch": record.epoch,
        "timestamp": record.timestamp,
        "extra": encode_tree(record.extra) if record.extra else None,
    }
    mask = 0
    for name in READING_NAMES:
        value = getattr(record, name)
        if value is not None and math.isnan(value):
            mask |= NAN_BIT[name]
            value = None
        row[name] = value
    row["nan_mask"] = mask
    return row


def _existing_steps(session: Session, run_id: str, rank: int, steps: Sequence[int]) -> set[int]:
    """Steps of this (run, rank) already stored within the batch's step range."""
    query = select(Diagnostic.step).where(
        and_(
            Diagnostic.run_id == run_id,
            Diagnostic.rank == rank,
            Diagnostic.step >= min(steps),
            Diagnostic.step <= max(steps),
        )
    )
    return set(session.scalars(query))


def _split_new(session: Session, run_id: str, records: Iterable[DiagnosticRecord]) -> tuple[list, int]:
    """Drop records already stored or repeated within the request; keep the first copy."""
    by_rank: dict[int, dict[int, DiagnosticRecord]] = {}
    duplicates = 0
    for record in records:
        steps = by_rank.setdefault(record.rank, {})
        if record.step in steps:
            duplicates += 1
        else:
            steps[record.step] = record
    new_records: list[DiagnosticRecord] = []
    for rank, steps in by_rank.items():
        stored = _existing_steps(session, run_id, rank, list(steps))
        duplicates += len(stored)
        new_records.extend(record for step, record in steps.items() if step not in stored)
    new_records.sort(key=lambda record: (record.step, record.rank))
    return new_records, duplicates


def insert_records(session: Session, run: Run, records: Sequence[DiagnosticRecord]) -> InsertOutcome:
    """Store the records not yet stored; the caller holds the run's lock."""
    if not records:
        return InsertOutcome([], 0)
    new_records, duplicates = _split_new(session, run.run_id, records)
    if new_records:
        session.execute(insert(Diagnostic), [record_to_row(run.run_id, r) for r in new_records])
        run.record_count = (run.record_count or 0) + len(new_records)
        last = new_records[-1]
        if run.last_step is None or last.step >= run.last_step:
            run.last_step = last.step
        top_epoch = max(record.epoch for record in new_records)
        run.last_epoch = top_epoch if run.last_epoch is None else max(run.last_epoch, top_epoch)
    return InsertOutcome(new_records, duplicates)


def record_to_reading(record: DiagnosticRecord) -> BatchReading:
    """The rule engine's view of a record."""
    return BatchReading(
        step=record.step,
        epoch=record.epoch,
        rank=record.rank,
        extra=record.extra or None,
        **{name: getattr(record, name) for name in READING_NAMES},
    )


def row_readings(row: Any) -> dict[str, float | None]:
    """Readings of a stored row with NaN restored from the mask."""
    mask = row.nan_mask or 0
    return {
        name: (math.nan if mask & NAN_BIT[name] else getattr(row, name)) for name in READING_NAMES
    }


def iter_batch_readings(session: Session, run_id: str, chunk: int = 5000) -> Iterator[BatchReading]:
    """Every stored batch of a run in (step, rank) order, streamed in chunks (backtests)."""
    query = (
        select(Diagnostic)
        .where(Diagnostic.run_id == run_id)
        .order_by(Diagnostic.step, Diagnostic.rank)
        .execution_options(yield_per=chunk)
    )
    for row in session.scalars(query):
        extra = {key: decode_float(val) for key, val in row.extra.items()} if row.extra else None
        yield BatchReading(step=row.step, epoch=row.epoch, rank=row.rank, extra=extra, **row_readings(row))


def row_to_record_json(row: Diagnostic) -> dict[str, Any]:
    """A stored row as the API returns it (NaN/Inf spelled as strings)."""
    body: dict[str, Any] = {"step": row.step, "epoch": row.epoch, "rank": row.rank, "timestamp": row.timestamp}
    body.update(row_readings(row))
    body["extra"] = {key: decode_float(val) for key, val in (row.extra or {}).items()}
    return encode_tree(body)


def list_records(
    session: Session, run_id: str, *, rank: int | None, step_min: int | None, step_max: int | None, limit: int
) -> list[dict[str, Any]]:
    """Stored records in (step, rank) order as the API returns them."""
    query = select(Diagnostic).where(Diagnostic.run_id == run_id)
    if rank is not None:
        query = query.where(Diagnostic.rank == rank)
    if step_min is not None:
        query = query.where(Diagnostic.step >= step_min)
    if step_max is not None:
        query = query.where(Diagnostic.step <= step_max)
    query = query.order_by(Diagnostic.step, Diagnostic.rank).limit(limit)
    return [row_to_record_json(row) for row in session.scalars(query)]
