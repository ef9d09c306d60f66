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

from sqlalchemy import select
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
class RankSegments:
    """One rank's segments as this request sees them (new ones not yet added to the session)."""

    rows: list[RunSegment]
    cursor: tuple[int, int] | None  # (segment, last step) before the request: where evaluation stands
    opened: list[RunSegment] = field(default_factory=list)
    reference: dict[int, int] = field(default_factory=dict)  # segment -> step a jump is measured from

    @property
    def current(self) -> RunSegment | None:
        return self.rows[-1] if self.rows else None

    def segment_for(self, run_id: str, rank: int, session: str | None) -> int:
        """The segment of a record from ``session``: the current one, the session's own, or a new one."""
        current = self.current
        if session is None and current is not None:
            return current.segment
        for row in self.rows:
            if row.session == session:
                return row.segment
        number = 0 if current is None else current.segment + 1
        row = RunSegment(run_id=run_id, rank=rank, segment=number, session=session)
        self.reference[number] = 0 if current is None or current.last_step is None else current.last_step
        self.rows.append(row)
        self.opened.append(row)
        return number

    def row(self, segment: int) -> RunSegment:
        return next(row for row in self.rows if row.segment == segment)


def load_segments(session: Session, run_id: str, ranks: Sequence[int]) -> dict[int, RankSegments]:
    """Every stored segment of these ranks, oldest first (a handful per rank: one per restart)."""
    query = (select(RunSegment).where(RunSegment.run_id == run_id, RunSegment.rank.in_(list(ranks)))
             .order_by(RunSegment.rank, RunSegment.segment))
    by_rank: dict[int, list[RunSegment]] = {rank: [] for rank in ranks}
    for row in session.scalars(query):
        by_rank[row.rank].append(row)
    return {rank: RankSegments(rows, _cursor(rows)) for rank, rows in by_rank.items()}


def _cursor(rows: list[RunSegment]) -> tuple[int, int] | None:
    if not rows or rows[-1].last_step is None:
        return None
    return rows[-1].segment, rows[-1].last_step


def place(session: Session, run_id: str, records: Sequence[DiagnosticRecord],
          max_jump: int) -> tuple[list[int], dict[int, RankSegments]]:
    """The segment of every record (in request order); raises StepJump before anything is written."""
    segments = load_segments(session, run_id, sorted({record.rank for record in records}))
    placed = [segments[r.rank].segment_for(run_id, r.rank, r.session) for r in records]
    check_jumps(records, placed, segments, max_jump)
    for ranked in segments.values():
        session.add_all(ranked.opened)
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
    row.first_step = low if row.first_step is None else min(row.first_step, low)
    row.last_step = high if row.last_step is None else max(row.last_step, high)


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
