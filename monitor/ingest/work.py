"""The ingestion transactions: what runs in an ingest worker (process or thread).

Each function takes the database and settings first, then plain picklable arguments,
so the same call works in a thread of the server process and in a child process
(``monitor.ingest.child``). No HTTP here: errors are ``monitor.ingest.failures``.
"""

from __future__ import annotations

from typing import Any

from monitor.evaluation import evaluate_batches, evaluate_epoch
from monitor.ingest.body import parse_body
from monitor.ingest.failures import InvalidBody, TooManyRecords
from monitor.ingest.hold import hold_point
from monitor.metrics import observe_ingest
from monitor.schemas.diagnostics import DiagnosticBatch, EpochResult, EpochSummary, IngestResult
from monitor.settings import Settings
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.diagnostics import insert_records
from monitor.store.epochs import insert_epoch, summary_to_reading
from monitor.store.rollups import update_rollups
from monitor.store.segments import StepJump


def store_batch(db: Database, settings: Settings, run_id: str, body: bytes, content_type: str | None) -> IngestResult:
    """Validate, then one write transaction: insert, fold into rollups, evaluate rules, queue alerts."""
    batch = parse_body(DiagnosticBatch, body, content_type)
    if len(batch.records) > settings.max_records_per_request:
        raise TooManyRecords(settings.max_records_per_request)
    with db.write_session() as session:
        run = runs.get_run(session, run_id, lock=True)
        try:
            outcome = insert_records(session, run, batch.records, settings.max_step_jump)
        except StepJump as jump:
            raise InvalidBody(step_jump_errors(jump)) from jump
        update_rollups(session, run_id, outcome.new_records)
        hold_point()  # test-only: a fault test kills the worker here, rows written, nothing committed
        evaluate_batches(session, run, outcome.readings, settings.public_url)
        last_step = run.last_step
    observe_ingest(len(outcome.new_records), outcome.duplicates, outcome.late)
    return IngestResult(accepted=len(outcome.new_records), duplicates=outcome.duplicates, last_step=last_step,
                        late=outcome.late, notes=outcome.notes)


def step_jump_errors(jump: StepJump) -> list[dict[str, Any]]:
    """The 422 detail for steps that jump too far: one entry per record, no value repeated."""
    msg = (f"step is more than {jump.limit} above the rank's last step (0 before its first record); "
           "send the global step, which grows by about one a batch (MONITOR_MAX_STEP_JUMP)")
    return [{"type": "step_jump", "loc": ["body", "records", index, "step"], "msg": msg} for index in jump.indices]


def store_epoch(db: Database, settings: Settings, run_id: str, summary: EpochSummary) -> EpochResult:
    """One write transaction: the summary, the epoch rules, the decision."""
    with db.write_session() as session:
        run = runs.get_run(session, run_id, lock=True)
        accepted = insert_epoch(session, run_id, summary)
        if accepted:
            evaluate_epoch(session, run, summary_to_reading(summary), settings.public_url)
        decision = run.decision
    return EpochResult(accepted=accepted, duplicate=not accepted, decision=decision)
