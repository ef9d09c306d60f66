"""Run segments: where a rank's steps start again, and which steps are absurd (issue 18.8).

Why: rules evaluate readings in step order and ignore a step at or below the last one
(retries, out-of-order deliveries). A trainer resumed from a checkpoint under the same
run id rewinds its step, and one wild step (2**62) put every later one "below" it: both
turned evaluation off without a word. Records now carry an optional ``session`` (new at
every process start); a new session on a rank opens that rank's next segment and the
engine orders readings by (segment, step). A step more than ``max_jump`` above its
rank's last step (0 for a rank's first record) is refused: there is no step it could
honestly follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from monitor.schemas.diagnostics import DiagnosticRecord
from monitor.store.models import RunSegment


class StepJump(ValueError):
    """Records whose step jumps more than ``limit`` above their rank's last step (the API answers 422)."""

    def __init__(self, indices: list[int], limit: int) -> None:
        super().__init__(f"{len(indices)} records jump more than {limit} steps")
        self.indices = indices
        self.limit = limit


@dataclass
class SegmentRow:
    """One ``run_segments`` row as plain data (Core reads and writes: ingestion runs this per request)."""

    segment: int
    session: str | None
    first_step: int | None = None
    last_step: int | None = None
    new: bool = False
    changed: bool = False


@dataclass
class RankSegments:
    """One rank's segments as this request sees them (new ones not yet written)."""

    rows: list[SegmentRow]
    cursor: tuple[int, int] | None  # (segment, last step) before the request: where evaluation stands
    opened: list[SegmentRow] = field(default_factory=list)
    reference: dict[int, int] = field(default_factory=dict)  # segment -> step a jump is measured from

    @property
    def current(self) -> SegmentRow | None:
        return self.rows[-1] if self.rows else None

    def segment_for(self, session: str | None) -> int:
        """The segment of a record from ``session``: the current one, the session's own, or a new one."""
        current = self.current
        if session is None and current is not None:
            return current.segment
        for row in self.rows:
            if row.session == session:
                return row.segment
        number = 0 if current is None else current.segment + 1
        row = SegmentRow(number, session, new=True)
        self.reference[number] = 0 if current is None or current.last_step is None else current.last_step
        self.rows.append(row)
        self.opened.append(row)
        return number

    def row(self, segment: int) -> SegmentRow:
        return next(row for row in self.rows if row.segment == segment)


def load_segments(session: Session, run_id: str, ranks: Sequence[int]) -> dict[int, RankSegments]:
    """Every stored segment of these ranks, oldest first (a handful per rank: one per restart)."""
    query = (select(RunSegment.rank, RunSegment.segment, RunSegment.session, RunSegment.first_step,
                    RunSegment.last_step)
             .where(RunSegment.run_id == run_id, RunSegment.rank.in_(list(ranks)))
             .order_by(RunSegment.rank, RunSegment.segment))
    by_rank: dict[int, list[SegmentRow]] = {rank: [] for rank in ranks}
    for rank, *values in session.execute(query):
        by_rank[rank].append(SegmentRow(*values))
    return {rank: RankSegments(rows, _cursor(rows)) for rank, rows in by_rank.items()}


def _cursor(rows: list[SegmentRow]) -> tuple[int, int] | None:
    if not rows or rows[-1].last_step is None:
        return None
    return rows[-1].segment, rows[-1].last_step


def place(session: Session, run_id: str, records: Sequence[DiagnosticRecord],
          max_jump: int) -> tuple[list[int], dict[int, RankSegments]]:
    """The segment of every record (in request order); raises StepJump before anything is written."""
    segments = load_segments(session, run_id, sorted({record.rank for record in records}))
    placed = [segments[r.rank].segment_for(r.session) for r in records]
    check_jumps(records, placed, segments, max_jump)
    return placed, segments


def check_jumps(records: Sequence[DiagnosticRecord], placed: Sequence[int],
                segments: dict[int, RankSegments], max_jump: int) -> None:
    """Walk each (rank, segment)'s steps upwards; a step more than ``max_jump`` above the last one is refused."""
    groups: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for index, (record, segment) in enumerate(zip(records, placed)):
        groups.setdefault((record.rank, segment), []).append((record.step, index))
    refused: list[int] = []
    for (rank, segment), steps in groups.items():
        ranked = segments[rank]
        stored = ranked.row(segment).last_step
        last = stored if stored is not None else ranked.reference.get(segment, 0)
        for step, index in sorted(steps):
            if step > last + max_jump:
                refused.append(index)
            else:
                last = max(last, step)
    if refused:
        raise StepJump(sorted(refused), max_jump)


def advance(ranked: RankSegments, segment: int, steps: Sequence[int]) -> None:
    """Widen the segment's stored step range by newly stored steps."""
    row = ranked.row(segment)
    low, high = min(steps), max(steps)
    if row.first_step is None or low < row.first_step:
        row.first_step, row.changed = low, True
    if row.last_step is None or high > row.last_step:
        row.last_step, row.changed = high, True


def save_segments(session: Session, run_id: str, segments: dict[int, RankSegments]) -> None:
    """Write the request's new segments and the widened step ranges (the caller holds the run's lock)."""
    fresh, moved = [], []
    for rank, ranked in segments.items():
        for row in ranked.rows:
            values = {"r_run": run_id, "r_rank": rank, "r_segment": row.segment,
                      "first_step": row.first_step, "last_step": row.last_step}
            if row.new:
                fresh.append({"run_id": run_id, "rank": rank, "segment": row.segment, "session": row.session,
                              "first_step": row.first_step, "last_step": row.last_step})
            elif row.changed:
                moved.append(values)
    if fresh:
        session.execute(insert(RunSegment), fresh)
    if moved:
        session.execute(_WIDEN, moved)


_WIDEN = (update(RunSegment.__table__)
          .where(RunSegment.run_id == bindparam("r_run"), RunSegment.rank == bindparam("r_rank"),
                 RunSegment.segment == bindparam("r_segment")))


def current_last_steps(session: Session, run_id: str) -> int | None:
    """The highest last step among the ranks' current segments (the run's "where is it now")."""
    rows = session.execute(select(RunSegment.rank, RunSegment.segment, RunSegment.last_step)
                           .where(RunSegment.run_id == run_id)).all()
    newest: dict[int, tuple[int, int | None]] = {}
    for rank, segment, last_step in rows:
        if rank not in newest or segment > newest[rank][0]:
            newest[rank] = (segment, last_step)
    steps = [last for _, last in newest.values() if last is not None]
    return max(steps) if steps else None
