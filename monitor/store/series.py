"""Chart series: a step window of readings, downsampled so spikes survive, in bounded time.

Small windows are read from raw rows; windows holding more than ``RAW_LIMIT`` readings
are read from rollup buckets (their per-bucket min and max at the step they happened),
so the cost depends on the number of buckets, not on the length of the run. Either way
the points go through MinMaxLTTB and the window's global min and max are always kept.

Without ``rank`` every rank's points are merged in step order and downsampled together:
the chart is the envelope of all ranks, so the worst rank's spike is never averaged away.
NaN/Inf cannot travel in JSON numbers nor be drawn, so they are listed separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from tsdownsample import MinMaxLTTBDownsampler

from monitor.floats import decode_float, encode_float
from monitor.schemas.diagnostics import MAX_INDEX, MAX_NAME_LENGTH, READING_NAMES
from monitor.schemas.text import text_problem
from monitor.store import rollups
from monitor.store.models import Diagnostic, Run, WebhookDelivery
from monitor.store.rollups import WIDTHS, BucketRow
from monitor.store.series_readings import EXTRA_PREFIX, Readings, raw_columns, rows_to_readings

RAW_LIMIT = 10_000  # readings per metric above which the window is read from rollups
MAX_NONFINITE = 500  # NaN/Inf entries listed per metric (the total is always given)
MIN_POINTS = 10
MAX_POINTS = 20_000


class UnknownMetric(ValueError):
    """A requested metric that is neither a reading nor ``extra.<name>`` (the API answers 422)."""


@dataclass(frozen=True)
class SeriesWindow:
    """What to read: metrics, a step window (None = whole run), a rank (None = all), a budget."""

    metrics: tuple[str, ...]
    max_points: int
    rank: int | None = None
    step_min: int | None = None
    step_max: int | None = None


def parse_metrics(text: str | None) -> tuple[str, ...]:
    """Comma-separated names, validated; empty means every built-in reading."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    unknown = sum(not is_known_metric(name) for name in names)
    if unknown:  # the names are not repeated: an error answer never echoes the client's input
        raise UnknownMetric(f"{unknown} unknown metric(s); valid: {list(READING_NAMES)} or extra.NAME")
    return tuple(dict.fromkeys(names)) or READING_NAMES


def is_known_metric(name: str) -> bool:
    """A built-in reading or ``extra.<name>`` with a name the ingest API would accept."""
    if name in READING_NAMES:
        return True
    extra = name[len(EXTRA_PREFIX):] if name.startswith(EXTRA_PREFIX) else ""
    return 0 < len(extra) <= MAX_NAME_LENGTH and text_problem(extra) is None


def read_series(session: Session, run: Run, window: SeriesWindow) -> dict[str, dict[str, Any]]:
    """Downsampled points per metric for ``window`` (JSON-ready)."""
    lo = max(window.step_min or 0, 0)
    hi = min(window.step_max if window.step_max is not None else (run.last_step or 0), MAX_INDEX)
    if run.last_step is None or lo > hi:
        return {metric: _empty() for metric in window.metrics}
    ranks = [window.rank] if window.rank is not None else rollups.rolled_up_ranks(session, run.run_id)
    counts = rollups.window_counts(session, run.run_id, window.metrics, ranks, lo, hi) if ranks else {}
    wide = [metric for metric in window.metrics if counts.get(metric, 0) > RAW_LIMIT]
    narrow = [metric for metric in window.metrics if metric not in wide]
    out = _read_narrow(session, run.run_id, narrow, ranks, lo, hi, window.max_points) if narrow else {}
    width = pick_width(lo, hi, len(ranks), window.max_points)
    for metric in wide:
        rows = rollups.read_buckets(session, run.run_id, metric, width, ranks, lo, hi)
        out[metric] = _from_buckets(rows, lo, hi, window.max_points, width)
    return {metric: out[metric] for metric in window.metrics}


def pick_width(lo: int, hi: int, rank_count: int, max_points: int) -> int:
    """The coarsest width giving at least ``max_points / 4`` buckets (two candidate points each).

    Fewer, wider buckets keep the read small; each still contributes its true min and max,
    so the drawn envelope is exact at that resolution (a chart is ~1000 pixels wide).
    """
    for width in reversed(WIDTHS):
        if 4 * (hi // width - lo // width + 1) * max(rank_count, 1) >= max_points:
            return width
    return WIDTHS[0]


def _read_narrow(session: Session, run_id: str, metrics: Sequence[str], ranks: Sequence[int], lo: int, hi: int,
                 max_points: int) -> dict[str, dict[str, Any]]:
    """Raw rows, plus the finest buckets where raw rows were pruned by retention."""
    raw = _read_raw(session, run_id, metrics, ranks or None, lo, hi)
    out = {}
    for metric in metrics:
        fine = rollups.read_buckets(session, run_id, metric, WIDTHS[0], ranks, lo, hi) if ranks else []
        out[metric] = _summarise(_with_pruned(raw.get(metric), fine, lo, hi), max_points, "raw")
    return out


def _read_raw(session: Session, run_id: str, metrics: Sequence[str], ranks: Sequence[int] | None,
              lo: int, hi: int) -> dict[str, Readings]:
    """Raw readings in the window, one query for all metrics (the unique index serves it per rank)."""
    names = [metric for metric in metrics if metric in READING_NAMES]
    extras = [metric for metric in metrics if metric not in READING_NAMES]
    query = select(*raw_columns(names, extras)).where(
        Diagnostic.run_id == run_id, Diagnostic.step.between(lo, hi)
    )
    if ranks is not None:
        query = query.where(Diagnostic.rank.in_(list(ranks)))
    return rows_to_readings(session.connection().execute(query).all(), names, extras)


def _with_pruned(readings: Readings | None, buckets: list[tuple], lo: int, hi: int) -> Readings | None:
    """Add bucket extremes for (rank, bucket)s that have rollups but no raw rows any more."""
    if not buckets:
        return readings
    present: set[tuple[int, int]] = set()
    if readings is not None:
        present = set(zip(readings.ranks.tolist(), (readings.steps // WIDTHS[0]).tolist()))
    ranks, steps, values = [], [], []
    for row in map(BucketRow._make, buckets):
        if (row.rank, row.bucket) in present:
            continue
        for step, value in _bucket_points(row):
            if lo <= step <= hi:
                ranks.append(row.rank)
                steps.append(step)
                values.append(value)
    if not steps:
        return readings
    extra = Readings.from_lists(ranks, steps, values)
    if readings is None:
        return extra
    return Readings(*(np.concatenate(pair) for pair in zip(
        (readings.ranks, readings.steps, readings.values), (extra.ranks, extra.steps, extra.values))))


def _bucket_points(row: BucketRow) -> list[tuple[int, float]]:
    """A bucket's stand-in points: its min, its max and its first non-finite reading."""
    points = []
    if row.count:
        points.append((row.min_step, row.min_value))
        if row.max_step != row.min_step:
            points.append((row.max_step, row.max_value))
    if row.nonfinite_count and row.nonfinite_step is not None:
        points.append((row.nonfinite_step, decode_float(row.nonfinite_value)))
    return points


def _summarise(readings: Readings | None, max_points: int, source: str) -> dict[str, Any]:
    """Sort, split off non-finite readings, downsample the rest."""
    if readings is None or not len(readings.steps):
        return _empty(source)
    order = np.lexsort((readings.ranks, readings.steps))
    steps, values, ranks = readings.steps[order], readings.values[order], readings.ranks[order]
    finite = np.isfinite(values)
    bad = np.flatnonzero(~finite)
    nonfinite = [{"step": int(steps[i]), "rank": int(ranks[i]), "value": encode_float(float(values[i])), "count": 1}
                 for i in bad[:MAX_NONFINITE]]
    steps, values = steps[finite], values[finite]
    keep = downsample(steps, values, max_points)
    return _body(steps[keep], values[keep], len(steps), source, nonfinite, len(bad))


def _from_buckets(rows: list[tuple], lo: int, hi: int, max_points: int, width: int) -> dict[str, Any]:
    """Candidate points from bucket extremes (clipped to the window), then downsampled; vectorised."""
    source = f"rollup:{width}"
    if not rows:
        return _empty(source)
    columns = BucketRow(*zip(*rows))
    counts = np.array(columns.count, dtype=np.int64)
    filled = np.flatnonzero(counts > 0)
    ranks = np.array(columns.rank, dtype=np.int64)[filled]
    steps = np.concatenate([_ints(columns.min_step, filled), _ints(columns.max_step, filled)])
    values = np.concatenate([np.array(columns.min_value, dtype=np.float64)[filled],
                             np.array(columns.max_value, dtype=np.float64)[filled]])
    ranks = np.concatenate([ranks, ranks])
    inside = (steps >= lo) & (steps <= hi)
    steps, values, ranks = steps[inside], values[inside], ranks[inside]
    order = np.lexsort((ranks, steps))
    steps, values, ranks = steps[order], values[order], ranks[order]
    unique = np.ones(len(steps), dtype=bool)  # a one-reading bucket has min == max
    unique[1:] = (steps[1:] != steps[:-1]) | (ranks[1:] != ranks[:-1])
    steps, values = steps[unique], values[unique]
    nonfinite, nonfinite_total = _bucket_nonfinite(columns, lo, hi)
    keep = downsample(steps, values, max_points)
    return _body(steps[keep], values[keep], int(counts.sum()), source, nonfinite, nonfinite_total)


def _ints(column: tuple, rows: np.ndarray) -> np.ndarray:
    """A nullable integer column at ``rows`` (which are known to be non-null there)."""
    return np.array([column[i] for i in rows.tolist()], dtype=np.int64)


def _bucket_nonfinite(columns: BucketRow, lo: int, hi: int) -> tuple[list[dict[str, Any]], int]:
    """One entry per bucket holding NaN/Inf (its first one, with the bucket's count)."""
    entries = [
        {"step": step, "rank": rank, "value": value, "count": count}
        for rank, count, step, value in zip(columns.rank, columns.nonfinite_count, columns.nonfinite_step,
                                            columns.nonfinite_value)
        if count and step is not None and lo <= step <= hi
    ]
    entries.sort(key=lambda item: (item["step"], item["rank"]))
    return entries[:MAX_NONFINITE], sum(item["count"] for item in entries)


def downsample(steps: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices to keep: MinMaxLTTB plus the global min and max (spikes must survive)."""
    if len(steps) <= max_points:
        return np.arange(len(steps))
    chosen = MinMaxLTTBDownsampler().downsample(steps, values, n_out=max(max_points - 2, 3))
    extremes = np.array([int(np.argmin(values)), int(np.argmax(values))])
    return np.union1d(chosen.astype(np.int64), extremes)


def _body(steps: np.ndarray, values: np.ndarray, in_window: int, source: str,
          nonfinite: list[dict[str, Any]], nonfinite_total: int) -> dict[str, Any]:
    """One metric's JSON answer."""
    return {
        "steps": steps.tolist(),
        "values": values.tolist(),
        "points_in_window": in_window,
        "source": source,
        "nonfinite": nonfinite,
        "nonfinite_total": nonfinite_total,
    }


def _empty(source: str = "raw") -> dict[str, Any]:
    return _body(np.array([], np.int64), np.array([], np.float64), 0, source, [], 0)


def metrics_with_data(session: Session, run_id: str) -> list[str]:
    """Readings this run reported (built-ins in their order, then extras); all built-ins if unknown."""
    present = rollups.rolled_up_metrics(session, run_id)
    if not present:
        return list(READING_NAMES)
    extras = [metric for metric in present if metric.startswith(EXTRA_PREFIX)]
    return [name for name in READING_NAMES if name in present] + extras


def list_deliveries(session: Session, run_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Webhook deliveries (alerts) of a run, newest first, without payloads or receiver URLs."""
    query = (select(WebhookDelivery).where(WebhookDelivery.run_id == run_id)
             .order_by(WebhookDelivery.id.desc()).limit(limit))
    return [
        {"id": row.id, "webhook_id": row.webhook_id, "event_type": row.event_type, "status": row.status,
         "attempts": row.attempts, "last_error": row.last_error, "created_at": row.created_at,
         "delivered_at": row.delivered_at, "next_attempt_at": row.next_attempt_at}
        for row in session.scalars(query)
    ]
