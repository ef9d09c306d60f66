"""Ingestion: per-batch diagnostics and epoch summaries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from monitor.api.deps import DbDep, SettingsDep, require_token
from monitor.api.ingest_slots import run_ingest
from monitor.api.raw_body import json_body, parse_body
from monitor.api.runs import RunId
from monitor.evaluation import evaluate_batches, evaluate_epoch
from monitor.metrics import observe_ingest
from monitor.schemas.diagnostics import MAX_INDEX, DiagnosticBatch, EpochResult, EpochSummary, IngestResult
from monitor.settings import Settings
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.diagnostics import insert_records, list_records
from monitor.store.epochs import insert_epoch, summary_to_reading
from monitor.store.rollups import update_rollups

router = APIRouter(prefix="/api/v1/runs", tags=["diagnostics"], dependencies=[Depends(require_token)])


@router.post("/{run_id}/diagnostics", response_model=IngestResult, openapi_extra=json_body(DiagnosticBatch))
async def ingest_diagnostics(run_id: RunId, db: DbDep, settings: SettingsDep, request: Request) -> IngestResult:
    """Store new records (retries are counted as duplicates) and evaluate the rules on them.

    The body is parsed and validated in the ingest worker thread, not on the event loop:
    a 50,000-record body takes long enough to parse that decision requests would queue
    behind it (see ``monitor.api.raw_body``).
    """
    body = await request.body()
    content_type = request.headers.get("content-type")
    return await run_ingest(request, _store_batch, run_id, body, content_type, db, settings)


def _store_batch(run_id: str, body: bytes, content_type: str | None, db: Database, settings: Settings) -> IngestResult:
    """Validate, then one write transaction: insert, fold into rollups, evaluate rules, queue alerts."""
    batch = parse_body(DiagnosticBatch, body, content_type)
    if len(batch.records) > settings.max_records_per_request:
        raise HTTPException(413, f"at most {settings.max_records_per_request} records per request")
    with db.write_session() as session:
        run = runs.get_run(session, run_id, lock=True)
        outcome = insert_records(session, run, batch.records)
        update_rollups(session, run_id, outcome.new_records)
        evaluate_batches(session, run, outcome.new_records, settings.public_url)
        last_step = run.last_step
    observe_ingest(len(outcome.new_records), outcome.duplicates)
    return IngestResult(accepted=len(outcome.new_records), duplicates=outcome.duplicates, last_step=last_step)


@router.post("/{run_id}/epochs", response_model=EpochResult)
async def close_epoch(
    run_id: RunId, summary: EpochSummary, db: DbDep, settings: SettingsDep, request: Request
) -> EpochResult:
    """Store an epoch summary once and evaluate the epoch rules (accuracy EMA, NaN, gradient gates)."""
    return await run_ingest(request, _store_epoch, run_id, summary, db, settings)


def _store_epoch(run_id: str, summary: EpochSummary, db: Database, settings: Settings) -> EpochResult:
    """One write transaction: the summary, the epoch rules, the decision."""
    with db.write_session() as session:
        run = runs.get_run(session, run_id, lock=True)
        accepted = insert_epoch(session, run_id, summary)
        if accepted:
            evaluate_epoch(session, run, summary_to_reading(summary), settings.public_url)
        decision = run.decision
    return EpochResult(accepted=accepted, duplicate=not accepted, decision=decision)


@router.get("/{run_id}/diagnostics")
def read_diagnostics(
    run_id: RunId,
    db: DbDep,
    rank: Annotated[int | None, Query(ge=0, le=65535)] = None,
    step_min: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    step_max: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    """Raw stored records (NaN and Infinity spelled as strings), for exports and checks."""
    with db.read_session() as session:
        runs.get_run(session, run_id)
        records = list_records(session, run_id, rank=rank, step_min=step_min, step_max=step_max, limit=limit)
    return {"run_id": run_id, "records": records}
