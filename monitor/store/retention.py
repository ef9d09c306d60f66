"""Raw-row retention: drop old per-batch rows once the series rollups hold what charts need.

What stays: rule states (incremental, never re-read from raw rows), rule events,
decisions, epoch summaries, ``runs.record_count`` (it counts records ever ingested) and
the ``series_rollups`` buckets (per 64 to 16384 steps: min/max with their steps,
non-finite counts). What goes: ``diagnostics`` rows older than the cutoff.

A row's age is its trainer ``timestamp`` (unix seconds); a row without one is old when
its epoch was closed (server clock, ``epochs.closed_at``) before the cutoff; a row of a
run created after the cutoff is never old, whatever its trainer clock says. Per
(run, rank) raw rows are removed below a boundary aligned to the finest bucket width,
so a chart reader sees whole 64-step buckets either as raw rows or as rollups only, and
only buckets whose rollup holds at least as many readings as the raw rows are removed
(runs ingested before rollups existed keep their rows until ``rebuild_rollups`` ran).
Deletes are index range scans on (run_id, rank, step), a few thousand rows per
transaction, so ingestion is never blocked for long.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, delete, func, not_, or_, select
from sqlalchemy.orm import Session

from monitor.schemas.diagnostics import READING_NAMES
from monitor.store.database import Database
from monitor.store.diagnostics import NAN_BIT
from monitor.store.models import Diagnostic, EpochRecord, Run, utcnow
from monitor.store.rollup_models import SeriesRollup
from monitor.store.rollups import WIDTHS

log = logging.getLogger(__name__)

FINE_WIDTH = min(WIDTHS)
PROGRESS_SECONDS = 5.0
BucketCounts = dict[int, tuple[int, tuple[int, ...]]]  # bucket -> (rows, readings per metric)


@dataclass
class RunRetention:
    """What happened to one run: rows removed, and old rows kept for lack of rollups."""

    run_id: str
    deleted: int = 0
    kept_without_rollups: int = 0


@dataclass
class RetentionReport:
    """Outcome of one pass (``dry_run``: what would have been deleted)."""

    cutoff: datetime
    dry_run: bool
    runs: list[RunRetention] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return sum(run.deleted for run in self.runs)

    @property
    def kept_without_rollups(self) -> int:
        return sum(run.kept_without_rollups for run in self.runs)


def prune_raw_diagnostics(db: Database, older_than: timedelta, *, dry_run: bool = False,
                          batch_rows: int = 5000, now: datetime | None = None) -> RetentionReport:
    """Delete raw rows older than ``older_than`` whose buckets are rolled up; report per run."""
    cutoff = (now or utcnow()) - older_than
    report = RetentionReport(cutoff=cutoff, dry_run=dry_run)
    with db.read_session() as session:
        run_ids = list(session.scalars(select(Run.run_id).where(Run.created_at < cutoff).order_by(Run.run_id)))
    log.info("retention: %d run(s) created before %s%s", len(run_ids), cutoff.isoformat(),
             " (dry run)" if dry_run else "")
    for run_id in run_ids:
        outcome = _prune_run(db, run_id, cutoff, dry_run, batch_rows)
        if outcome.deleted or outcome.kept_without_rollups:
            report.runs.append(outcome)
            log.info("retention: run %s: %s %d raw rows, kept %d old rows without rollups", run_id,
                     "would delete" if dry_run else "deleted", outcome.deleted, outcome.kept_without_rollups)
    return report


def _prune_run(db: Database, run_id: str, cutoff: datetime, dry_run: bool, batch_rows: int) -> RunRetention:
    """One run, rank by rank (each rank has its own steps and buckets)."""
    outcome = RunRetention(run_id)
    with db.read_session() as session:
        old = _old_rows(session, run_id, cutoff)
        ranks = sorted(session.scalars(select(Diagnostic.rank).where(Diagnostic.run_id == run_id).distinct()))
    for rank in ranks:
        deleted, kept = _prune_rank(db, run_id, rank, old, dry_run, batch_rows)
        outcome.deleted += deleted
        outcome.kept_without_rollups += kept
    return outcome


def _prune_rank(db: Database, run_id: str, rank: int, old: ColumnElement[bool], dry_run: bool,
                batch_rows: int) -> tuple[int, int]:
    """(rows deleted or deletable, old rows kept because their rollups are missing or short)."""
    with db.read_session() as session:
        boundary = _boundary(session, run_id, rank, old)
        if boundary == 0:
            return 0, 0
        max_id = session.scalar(select(func.max(Diagnostic.id)))  # primary key: instant, unlike per run
        counted = _raw_counts(session, run_id, rank, boundary)
        rolled = _rolled_counts(session, run_id, rank, boundary)
    complete = [bucket for bucket, (_, readings) in counted.items() if _covered(bucket, readings, rolled)]
    removable = sum(counted[bucket][0] for bucket in complete)
    kept = sum(rows for rows, _ in counted.values()) - removable
    if dry_run or not complete:
        return removable, kept
    return _delete_buckets(db, run_id, rank, complete, counted, max_id, batch_rows), kept


def _old_rows(session: Session, run_id: str, cutoff: datetime) -> ColumnElement[bool]:
    """Which rows of the run are older than the cutoff (see the module docstring)."""
    by_clock = and_(Diagnostic.timestamp.is_not(None), Diagnostic.timestamp < cutoff.timestamp())
    last_closed = session.scalar(
        select(func.max(EpochRecord.epoch)).where(EpochRecord.run_id == run_id, EpochRecord.closed_at < cutoff)
    )
    if last_closed is None:
        return by_clock
    return or_(by_clock, and_(Diagnostic.timestamp.is_(None), Diagnostic.epoch <= last_closed))


def _boundary(session: Session, run_id: str, rank: int, old: ColumnElement[bool]) -> int:
    """Rows below this bucket-aligned step are all old. With no young row, the last bucket is
    kept if it is partly filled: the run may go on and fill it (a bucket is pruned whole)."""
    of_rank = (Diagnostic.run_id == run_id, Diagnostic.rank == rank)
    first_young = session.scalar(select(func.min(Diagnostic.step)).where(*of_rank, not_(old)))
    if first_young is None:
        last = session.scalar(select(func.max(Diagnostic.step)).where(*of_rank))
        first_young = -1 if last is None else last + 1
    return max(first_young, 0) // FINE_WIDTH * FINE_WIDTH


def _raw_counts(session: Session, run_id: str, rank: int, boundary: int) -> BucketCounts:
    """Per fine bucket below the boundary: rows, and readings of each metric (NaN included)."""
    bucket = (Diagnostic.step // FINE_WIDTH).label("bucket")
    readings = [
        func.count(getattr(Diagnostic, name))
        + func.sum(case((Diagnostic.nan_mask.op("&")(NAN_BIT[name]) != 0, 1), else_=0))
        for name in READING_NAMES
    ]
    query = select(bucket, func.count(), *readings).where(
        Diagnostic.run_id == run_id, Diagnostic.rank == rank, Diagnostic.step < boundary,
    ).group_by(bucket)
    return {int(row[0]): (int(row[1]), tuple(int(n or 0) for n in row[2:])) for row in session.execute(query)}


def _rolled_counts(session: Session, run_id: str, rank: int, boundary: int) -> dict[int, dict[str, int]]:
    """Per fine bucket below the boundary: readings each metric's rollup has folded in."""
    query = select(SeriesRollup.bucket, SeriesRollup.metric, SeriesRollup.count + SeriesRollup.nonfinite_count).where(
        SeriesRollup.run_id == run_id, SeriesRollup.rank == rank, SeriesRollup.width == FINE_WIDTH,
        SeriesRollup.bucket < boundary // FINE_WIDTH,
    )
    rolled: dict[int, dict[str, int]] = defaultdict(dict)
    for bucket, metric, count in session.execute(query):
        rolled[int(bucket)][metric] = int(count or 0)
    return rolled


def _covered(bucket: int, readings: Sequence[int], rolled: dict[int, dict[str, int]]) -> bool:
    """The bucket has rollups, and they hold every raw reading of every core metric."""
    stored = rolled.get(bucket)
    if not stored:
        return False
    return all(stored.get(name, 0) >= raw for name, raw in zip(READING_NAMES, readings))


def _delete_buckets(db: Database, run_id: str, rank: int, buckets: list[int], counted: BucketCounts,
                    max_id: int | None, batch_rows: int) -> int:
    """Delete whole buckets in transactions of about ``batch_rows`` rows, logging progress."""
    deleted, chunk, chunk_rows, last_log = 0, [], 0, time.monotonic()
    ordered = sorted(buckets)
    for index, bucket in enumerate(ordered):
        chunk.append(bucket)
        chunk_rows += counted[bucket][0]
        if chunk_rows >= batch_rows or index == len(ordered) - 1:
            deleted += _delete_chunk(db, run_id, rank, chunk, max_id)
            chunk, chunk_rows = [], 0
            if time.monotonic() - last_log > PROGRESS_SECONDS:
                log.info("retention: run %s rank %d: %d rows deleted so far", run_id, rank, deleted)
                last_log = time.monotonic()
    return deleted


def _step_ranges(buckets: list[int]) -> list[tuple[int, int]]:
    """Sorted buckets as [lo, hi) step ranges, consecutive buckets merged."""
    ranges: list[tuple[int, int]] = []
    for bucket in buckets:
        lo, hi = bucket * FINE_WIDTH, (bucket + 1) * FINE_WIDTH
        if ranges and ranges[-1][1] == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return ranges


def _delete_chunk(db: Database, run_id: str, rank: int, buckets: list[int], max_id: int | None) -> int:
    """One transaction: the rows of these buckets that existed when they were counted."""
    ranges = or_(*(and_(Diagnostic.step >= lo, Diagnostic.step < hi) for lo, hi in _step_ranges(buckets)))
    stmt = delete(Diagnostic).where(Diagnostic.run_id == run_id, Diagnostic.rank == rank, ranges)
    if max_id is not None:
        stmt = stmt.where(Diagnostic.id <= max_id)
    with db.write_session() as session:
        return session.execute(stmt.execution_options(synchronize_session=False)).rowcount
