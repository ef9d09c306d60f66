"""Series rollups: folded in at ingestion, read for chart windows too wide for raw rows.

Bucket widths grow by 4 from 64 to 16384 steps, so any window, from ten thousand steps
to tens of millions, is drawn from 500-2000 buckets per rank and metric (about 2 % of the
readings are stored twice, as buckets). Every write is a merge of per-bucket extremes, so
records may arrive in any order and the result does not depend on how ingestion was
batched. The caller holds the run's lock, which serialises writers of one run (no upsert
race).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from monitor.floats import encode_float
from monitor.schemas.diagnostics import READING_NAMES, DiagnosticRecord
from monitor.store.series_readings import (
    Readings,
    extra_readings,
    raw_columns,
    records_to_readings,
    rows_to_readings,
)
from monitor.store.models import Diagnostic
from monitor.store.rollup_models import SeriesRollup
from monitor.store.rollup_upsert import merge_statement

WIDTHS: tuple[int, ...] = (64, 256, 1024, 4096, 16384)
COARSE_WIDTH = WIDTHS[-1]


@dataclass
class Bucket:
    """Extremes of one reading over one bucket (finite readings only) plus non-finite count."""

    count: int = 0
    min_value: float | None = None
    min_step: int | None = None
    max_value: float | None = None
    max_step: int | None = None
    nonfinite_count: int = 0
    nonfinite_step: int | None = None
    nonfinite_value: str | None = None


BUCKET_FIELDS: tuple[str, ...] = tuple(item.name for item in fields(Bucket))


def _group_edges(ranks: np.ndarray, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each (rank, bucket) run in arrays sorted by rank, bucket."""
    starts = np.ones(len(ranks), dtype=bool)
    starts[1:] = (ranks[1:] != ranks[:-1]) | (buckets[1:] != buckets[:-1])
    first = np.flatnonzero(starts)
    last = np.append(first[1:] - 1, len(ranks) - 1)
    return first, last


def aggregate(readings: Readings, width: int) -> dict[tuple[int, int], Bucket]:
    """Buckets of one metric at one width, vectorised (a rebuild folds millions of rows)."""
    out: dict[tuple[int, int], Bucket] = {}
    finite = np.isfinite(readings.values)
    ranks, steps, values = readings.ranks[finite], readings.steps[finite], readings.values[finite]
    if len(values):
        buckets = steps // width
        order = np.lexsort((steps, values, buckets, ranks))  # by (value, step) within each bucket
        ranks, buckets, steps, values = ranks[order], buckets[order], steps[order], values[order]
        first, last = _group_edges(ranks, buckets)
        for r, b, n, lo, lo_s, hi, hi_s in zip(*(a.tolist() for a in (
                ranks[first], buckets[first], last - first + 1, values[first], steps[first],
                values[last], steps[last]))):
            out[(r, b)] = Bucket(n, lo, lo_s, hi, hi_s)
    _fold_nonfinite(out, readings, ~finite, width)
    return out


def _fold_nonfinite(out: dict[tuple[int, int], Bucket], readings: Readings, mask: np.ndarray, width: int) -> None:
    """Count non-finite readings per bucket and keep the first (its spelling, e.g. 'NaN')."""
    if not mask.any():
        return
    ranks, steps, values = readings.ranks[mask], readings.steps[mask], readings.values[mask]
    buckets = steps // width
    order = np.lexsort((steps, buckets, ranks))
    ranks, buckets, steps, values = ranks[order], buckets[order], steps[order], values[order]
    first, last = _group_edges(ranks, buckets)
    for r, b, n, step, value in zip(*(a.tolist() for a in (
            ranks[first], buckets[first], last - first + 1, steps[first], values[first]))):
        bucket = out.setdefault((r, b), Bucket())
        bucket.nonfinite_count, bucket.nonfinite_step = n, step
        bucket.nonfinite_value = str(encode_float(value))


def update_rollups(session: Session, run_id: str, new_records: Sequence[DiagnosticRecord]) -> None:
    """Fold newly stored records into the rollups (call in the ingest transaction, run locked)."""
    if new_records:
        fold_readings(session, run_id, records_to_readings(new_records))


def fold_readings(session: Session, run_id: str, readings: dict[str, Readings]) -> None:
    """Merge per-metric readings into the stored buckets of every width: one upsert statement."""
    rows = [{"run_id": run_id, "width": width, "metric": metric, "rank": rank, "bucket": bucket, **vars(stats)}
            for width in WIDTHS for metric, values in readings.items()
            for (rank, bucket), stats in aggregate(values, width).items()]
    if rows:
        connection = session.connection()
        connection.execute(merge_statement(connection.dialect.name), rows)


def rebuild_rollups(session: Session, run_id: str, chunk: int = 200_000) -> None:
    """Recompute a run's rollups from its raw rows (runs stored before migration 0002, repairs)."""
    session.execute(delete(SeriesRollup).where(SeriesRollup.run_id == run_id))
    query = (select(*raw_columns(READING_NAMES), Diagnostic.extra).where(Diagnostic.run_id == run_id)
             .execution_options(yield_per=chunk))
    for part in session.execute(query).partitions():
        readings = rows_to_readings([row[:-1] for row in part], READING_NAMES)
        readings.update(extra_readings((row[0], row[1], row[-1]) for row in part))
        fold_readings(session, run_id, readings)


# --- reading ------------------------------------------------------------------------------


def window_counts(session: Session, run_id: str, metrics: Sequence[str], ranks: Sequence[int],
                  step_lo: int, step_hi: int) -> dict[str, int]:
    """Readings per metric in a step window, summed over at most a few hundred buckets per rank.

    The width is the coarsest one that still puts 16 buckets in the window, so the partly
    covered buckets at the edges overcount by at most about an eighth.
    """
    width = next((w for w in reversed(WIDTHS) if step_hi - step_lo + 1 >= 16 * w), WIDTHS[0])
    query = (
        select(SeriesRollup.metric, func.sum(SeriesRollup.count + SeriesRollup.nonfinite_count))
        .where(SeriesRollup.run_id == run_id, SeriesRollup.metric.in_(list(metrics)),
               SeriesRollup.width == width, SeriesRollup.rank.in_(list(ranks)),
               SeriesRollup.bucket.between(step_lo // width, step_hi // width))
        .group_by(SeriesRollup.metric)
    )
    return {metric: int(total or 0) for metric, total in session.execute(query)}


def rolled_up_ranks(session: Session, run_id: str) -> list[int]:
    """Ranks that have rollups (a handful of coarse rows per rank, so this is cheap)."""
    query = select(SeriesRollup.rank).where(
        SeriesRollup.run_id == run_id, SeriesRollup.width == COARSE_WIDTH
    ).distinct()
    return sorted(session.scalars(query))


def rolled_up_metrics(session: Session, run_id: str) -> list[str]:
    """Metrics that have data in this run (charts are drawn for these)."""
    query = select(SeriesRollup.metric).where(
        SeriesRollup.run_id == run_id, SeriesRollup.width == COARSE_WIDTH
    ).distinct()
    return sorted(session.scalars(query))


class BucketRow(NamedTuple):
    """One stored bucket as :func:`read_buckets` returns it (plain tuples, in this order)."""

    rank: int
    bucket: int
    count: int
    min_step: int | None
    min_value: float | None
    max_step: int | None
    max_value: float | None
    nonfinite_count: int
    nonfinite_step: int | None
    nonfinite_value: str | None


def read_buckets(session: Session, run_id: str, metric: str, width: int, ranks: Sequence[int],
                 step_lo: int, step_hi: int) -> list[tuple]:
    """Bucket rows of one metric in a window, laid out like :class:`BucketRow` (tuples: fast)."""
    query = select(*(getattr(SeriesRollup, name) for name in BucketRow._fields)).where(
        SeriesRollup.run_id == run_id, SeriesRollup.metric == metric, SeriesRollup.width == width,
        SeriesRollup.rank.in_(list(ranks)), SeriesRollup.bucket.between(step_lo // width, step_hi // width),
    )
    return session.connection().execute(query).all()  # Core, fetchall: no per-row ORM overhead
