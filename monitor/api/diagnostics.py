"""Ingestion: per-batch diagnostics and epoch summaries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from monitor.api.deps import DbDep, require_token
from monitor.api.ingest_slots import run_ingest
from monitor.api.raw_body import json_body
from monitor.api.runs import RunId
from monitor.ingest.work import store_batch, store_epoch
from monitor.schemas.diagnostics import MAX_INDEX, DiagnosticBatch, EpochResult, EpochSummary, IngestResult
from monitor.store import runs
from monitor.store.diagnostics import list_records

router = APIRouter(prefix="/api/v1/runs", tags=["diagnostics"], dependencies=[Depends(require_token)])


@router.post("/{run_id}/diagnostics", response_model=IngestResult, openapi_extra=json_body(DiagnosticBatch))
async def ingest_diagnostics(run_id: RunId, request: Request) -> IngestResult:
    """Store new records (retries are counted as duplicates) and evaluate the rules on them.

    The body is parsed and validated by the ingest worker (``monitor.ingest``), not on the
    event loop: a 50,000-record body takes long enough to parse that decision requests
    would queue behind it (see ``monitor.api.raw_body``).
    """
    body = await request.body()
    content_type = request.headers.get("content-type")
    return await run_ingest(request, store_batch, run_id, body, content_type)


@router.post("/{run_id}/epochs", response_model=EpochResult)
async def close_epoch(run_id: RunId, summary: EpochSummary, request: Request) -> EpochResult:
    """Store an epoch summary once and evaluate the epoch rules (accuracy EMA, NaN, gradient gates)."""
    return await run_ingest(request, store_epoch, run_id, summary)


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
