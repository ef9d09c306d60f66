"""Storing per-batch records idempotently and reading them back."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from monitor.floats import decode_float, encode_tree
from monitor.rules.types import BatchReading
from monitor.schemas.diagnostics import READING_NAMES, DiagnosticRecord
from monitor.store.models import Diagnostic, Run
from monitor.store.segments import RankSegments, advance, current_last_steps, place, save_segments

DEFAULT_MAX_STEP_JUMP = 10_000_000  # MONITOR_MAX_STEP_JUMP's default (monitor.settings)

NAN_BIT = {name: 1 << index for index, name in enumerate(READING_NAMES)}
# The readings the rule engine's BatchReading knows: a reading is stored (and charted) as soon
# as the schema has it, and reaches the rules once BatchReading grows the field.
ENGINE_READINGS: tuple[str, ...] = tuple(
    name for name in READING_NAMES if name in {item.name for item in fields(BatchReading)})


@dataclass(frozen=True)
class InsertOutcome:
    """What a batch did: records newly stored, duplicates, and which new ones the rules see.

    ``readings``: the new records that are not late, as the engine reads them, in
    evaluation order ((segment, step) per rank). ``late``: new records stored but not
    evaluated. ``notes``: those things said in words for the ingest answer.
    """

    new_records: list[DiagnosticRecord]
    duplicates: int
    readings: list[BatchReading] = field(default_factory=list)
    late: int = 0
    notes: list[str] = field(default_factory=list)


def record_to_row(run_id: str, record: DiagnosticRecord, segment: int = 0) -> dict[str, Any]:
    """Column values for one record; NaN readings become NULL plus a nan_mask bit."""
    row: dict[str, Any] = {
        "run_id": run_id,
        "rank": record.rank,
        "step": record.step,
        "segment": segment,
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


def _existing_steps(session: Session, run_id: str, rank: int, segment: int, steps: Sequence[int]) -> set[int]:
    """Steps of this (run, rank, segment) already stored within the batch's step range."""
    query = select(Diagnostic.step).where(
        and_(
            Diagnostic.run_id == run_id,
            Diagnostic.rank == rank,
            Diagnostic.step >= min(steps),
            Diagnostic.step <= max(steps),
            Diagnostic.segment == segment,
        )
    )
    return set(session.scalars(query))


Placed = tuple[int, DiagnosticRecord]  # (segment, record)


def _split_new(session: Session, run_id: str, records: Sequence[DiagnosticRecord],
               placed: Sequence[int]) -> tuple[list[Placed], int, int]:
    """Drop records already stored or repeated within the request; keep the first copy.

    Also counts repeats within the request whose readings differ (not a retry: a step
    counter that stood still, e.g. over a skipped NaN batch).
    """
    groups: dict[tuple[int, int], dict[int, DiagnosticRecord]] = {}
    duplicates = differing = 0
    for record, segment in zip(records, placed):
        steps = groups.setdefault((record.rank, segment), {})
        kept = steps.get(record.step)
        if kept is None:
            steps[record.step] = record
            continue
        duplicates += 1
        differing += encode_tree(kept.model_dump()) != encode_tree(record.model_dump())
    new_records: list[Placed] = []
    for (rank, segment), steps in groups.items():
        stored = _existing_steps(session, run_id, rank, segment, list(steps))
        duplicates += len(stored)
        new_records.extend((segment, record) for step, record in steps.items() if step not in stored)
    new_records.sort(key=lambda item: (item[0], item[1].step, item[1].rank))
    return new_records, duplicates, differing


def _evaluation_order(new_records: list[Placed], segments: dict[int, RankSegments]) -> tuple[list[Placed], int]:
    """The new records past their rank's (segment, step) cursor, in order, and how many are late."""
    cursors = {rank: ranked.cursor for rank, ranked in segments.items()}
    evaluate: list[Placed] = []
    for segment, record in new_records:  # sorted by (segment, step): per rank, the engine's order
        cursor = cursors[record.rank]
        if cursor is None or (segment, record.step) > cursor:
            cursors[record.rank] = (segment, record.step)
            evaluate.append((segment, record))
    return evaluate, len(new_records) - len(evaluate)


def insert_records(session: Session, run: Run, records: Sequence[DiagnosticRecord],
                   max_jump: int = DEFAULT_MAX_STEP_JUMP) -> InsertOutcome:
    """Store the records not yet stored; the caller holds the run's lock. Raises StepJump."""
    if not records:
        return InsertOutcome([], 0)
    placed, segments = place(session, run.run_id, records, max_jump)
    new_records, duplicates, differing = _split_new(session, run.run_id, records, placed)
    evaluate, late = _evaluation_order(new_records, segments)
    if new_records:
        session.execute(insert(Diagnostic), [record_to_row(run.run_id, r, seg) for seg, r in new_records])
        _advance_segments(new_records, segments)
        save_segments(session, run.run_id, segments)
        _advance_run(session, run, new_records, evaluate, segments)
    notes = segment_notes(segments, late, differing)
    readings = [record_to_reading(record, segment) for segment, record in evaluate]
    return InsertOutcome([record for _, record in new_records], duplicates, readings, late, notes)


def _advance_segments(new_records: list[Placed], segments: dict[int, RankSegments]) -> None:
    steps: dict[tuple[int, int], list[int]] = {}
    for segment, record in new_records:
        steps.setdefault((record.rank, segment), []).append(record.step)
    for (rank, segment), stored in steps.items():
        advance(segments[rank], segment, stored)


def _advance_run(session: Session, run: Run, new_records: list[Placed], evaluate: list[Placed],
                 segments: dict[int, RankSegments]) -> None:
    """Record count, the run's last step (the newest segments' highest) and last epoch."""
    run.record_count = (run.record_count or 0) + len(new_records)
    if any(ranked.opened for ranked in segments.values()):
        run.last_step = current_last_steps(session, run.run_id)
    elif evaluate:
        top = max(record.step for _, record in evaluate)
        run.last_step = top if run.last_step is None else max(run.last_step, top)
    top_epoch = max(record.epoch for _, record in new_records)
    run.last_epoch = top_epoch if run.last_epoch is None else max(run.last_epoch, top_epoch)


def segment_notes(segments: dict[int, RankSegments], late: int, differing: int) -> list[str]:
    """The ingest answer's words for new segments, late records and steps that stood still."""
    notes = [f"rank {rank}: a new session opened segment {row.segment}; the rules evaluate its steps from its "
             "first one" for rank, ranked in sorted(segments.items()) for row in ranked.opened if row.segment > 0]
    if late:
        notes.append(f"{late} records were stored but not evaluated: at or below their rank's last evaluated step "
                     "(a rewind without a new session, or records of an earlier session); see docs/steps.md")
    if differing:
        notes.append(f"{differing} records repeated a step of this request with different readings; the first of "
                     "each was kept (the step must advance every batch, skipped ones included)")
    return notes


def record_to_reading(record: DiagnosticRecord, segment: int = 0) -> BatchReading:
    """The rule engine's view of a record."""
    return BatchReading(
        step=record.step,
        epoch=record.epoch,
        rank=record.rank,
        segment=segment,
        extra=record.extra or None,
        **{name: getattr(record, name) for name in ENGINE_READINGS},
    )


def row_readings(row: Any) -> dict[str, float | None]:
    """Readings of a stored row with NaN restored from the mask."""
    mask = row.nan_mask or 0
    return {
        name: (math.nan if mask & NAN_BIT[name] else getattr(row, name)) for name in READING_NAMES
    }


def iter_batch_readings(session: Session, run_id: str, chunk: int = 5000) -> Iterator[BatchReading]:
    """Every stored batch of a run in (segment, step, rank) order, streamed in chunks (backtests).

    Per rank that is the order ingestion evaluated them in (a resumed segment after the one before).
    """
    query = (
        select(Diagnostic)
        .where(Diagnostic.run_id == run_id)
        .order_by(Diagnostic.segment, Diagnostic.step, Diagnostic.rank)
        .execution_options(yield_per=chunk)
    )
    for row in session.scalars(query):
        readings = row_readings(row)
        extra = {key: decode_float(val) for key, val in row.extra.items()} if row.extra else None
        yield BatchReading(step=row.step, epoch=row.epoch, rank=row.rank, segment=row.segment, extra=extra,
                           **{name: readings[name] for name in ENGINE_READINGS})


def row_to_record_json(row: Diagnostic) -> dict[str, Any]:
    """A stored row as the API returns it (NaN/Inf spelled as strings)."""
    body: dict[str, Any] = {"step": row.step, "epoch": row.epoch, "rank": row.rank, "segment": row.segment,
                            "timestamp": row.timestamp}
    body.update(row_readings(row))
    body["extra"] = {key: decode_float(val) for key, val in (row.extra or {}).items()}
    return encode_tree(body)


@dataclass(frozen=True)
class RecordPage:
    """Which records to list: filters, page size, and where the page before ended (step, rank)."""

    rank: int | None
    step_min: int | None
    step_max: int | None
    limit: int
    after: tuple[int, int, int] | None = None  # (step, rank, segment) of the last row shown


def list_records(session: Session, run_id: str, page: RecordPage) -> tuple[list[dict[str, Any]], str | None]:
    """A page of stored records in (step, rank) order as the API returns them, and the cursor
    of the next page (None on the last). Keyset paging: every row once, however rows arrive."""
    query = select(Diagnostic).where(Diagnostic.run_id == run_id)
    if page.rank is not None:
        query = query.where(Diagnostic.rank == page.rank)
    if page.step_min is not None:
        query = query.where(Diagnostic.step >= page.step_min)
    if page.step_max is not None:
        query = query.where(Diagnostic.step <= page.step_max)
    if page.after is not None:
        step, rank, segment = page.after
        query = query.where(or_(
            Diagnostic.step > step,
            and_(Diagnostic.step == step, Diagnostic.rank > rank),
            and_(Diagnostic.step == step, Diagnostic.rank == rank, Diagnostic.segment > segment),
        ))
    query = query.order_by(Diagnostic.step, Diagnostic.rank, Diagnostic.segment).limit(page.limit + 1)
    rows = list(session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    cursor = f"{rows[-1].step}.{rows[-1].rank}.{rows[-1].segment}" if more else None
    return [row_to_record_json(row) for row in rows], cursor
