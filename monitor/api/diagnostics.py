"""Ingestion: per-batch diagnostics and epoch summaries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from monitor.api.deps import DbDep, SettingsDep, require_token
from monitor.api.errors import unprocessable
from monitor.api.ingest_slots import run_ingest
from monitor.api.raw_body import json_body
from monitor.api.read_slots import run_read
from monitor.api.runs import RunId
from monitor.ingest.work import store_batch, store_epoch
from monitor.schemas.diagnostics import MAX_INDEX, DiagnosticBatch, EpochResult, EpochSummary, IngestResult
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.diagnostics import RecordPage, list_records

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


Cursor = Annotated[str | None, Query(pattern=r"^\d{1,19}\.\d{1,5}\.\d{1,10}$", description="`next_cursor` of the page before")]


@router.get("/{run_id}/diagnostics")
async def read_diagnostics(
    request: Request,
    run_id: RunId,
    db: DbDep,
    settings: SettingsDep,
    rank: Annotated[int | None, Query(ge=0, le=65535)] = None,
    step_min: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    step_max: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    limit: Annotated[int | None, Query(ge=1, description="Records per page (default and most: "
                                       "MONITOR_MAX_RECORDS_PER_PAGE)")] = None,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Raw stored records in (step, rank) order, one page at a time (NaN and Infinity spelled
    as strings), for exports and checks. ``next_cursor`` is null on the last page."""
    most = settings.max_records_per_page
    if limit is not None and limit > most:
        raise unprocessable(["query", "limit"], f"at most {most} records per page (MONITOR_MAX_RECORDS_PER_PAGE); "
                            "follow next_cursor for more", type="less_than_equal")
    page = RecordPage(rank, step_min, step_max, limit or most, _after(cursor))
    records, next_cursor = await run_read(request, _page, db, run_id, page)
    return {"run_id": run_id, "records": records, "next_cursor": next_cursor}


def _after(cursor: str | None) -> tuple[int, int, int] | None:
    """(step, rank, segment) of the last record of the page before; 422 when out of range."""
    if cursor is None:
        return None
    step, rank, segment = (int(part) for part in cursor.split("."))
    if step > MAX_INDEX or rank > 65535 or segment > 2**31 - 1:
        raise unprocessable(["query", "cursor"], "cursor out of range")
    return step, rank, segment


def _page(db: Database, run_id: str, page: RecordPage) -> tuple[list[dict[str, Any]], str | None]:
    """One page of records and the cursor of the next (in a worker thread)."""
    with db.read_session() as session:
        runs.get_run(session, run_id)
        return list_records(session, run_id, page)
