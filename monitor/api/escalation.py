"""The trainer's meta-escalation question: may escalation go on, or pause?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from monitor.api.deps import DbDep, require_token
from monitor.evaluation import answer_json, decision_answer, thresholds_for
from monitor.metrics import observe_decision
from monitor.schemas.escalation import DecisionAnswer
from monitor.schemas.runs import RUN_ID_PATTERN
from monitor.store import runs
from monitor.store.async_rows import AsyncRowReader
from monitor.store.database import Database
from monitor.store.rule_states import load_states

router = APIRouter(tags=["escalation"], dependencies=[Depends(require_token)])


@router.get("/escalation/decision", response_class=Response,
            responses={200: {"model": DecisionAnswer, "description": "The run's current decision"},
                       404: {"description": "Unknown run"}})
async def escalation_decision(
    request: Request, db: DbDep, run_id: Annotated[str, Query(pattern=RUN_ID_PATTERN)]
) -> Response:
    """Serve the answer the run's last write stored, so every server process answers the same.

    Trainers poll this while ingestion keeps the worker threads busy, so the read stays on
    the event loop: on SQLite directly (one row from a WAL snapshot, which never waits for
    writers, costs less than the hop to a thread that must then win the GIL from the ingest
    threads), on PostgreSQL over an async connection (``monitor.store.async_rows``).
    """
    reader: AsyncRowReader | None = getattr(request.app.state, "row_reader", None)  # set by the lifespan
    if reader is not None:
        decision, body = await runs.stored_decision_async(reader, run_id)
    elif db.is_sqlite:
        decision, body = runs.stored_decision(db, run_id)
    else:
        decision, body = await run_in_threadpool(runs.stored_decision, db, run_id)
    if body is None:
        decision, body = await run_in_threadpool(_computed_answer, db, run_id)
    observe_decision(decision)
    return Response(content=body, media_type="application/json")


def _computed_answer(db: Database, run_id: str) -> tuple[str, str]:
    """For runs stored before migration 0003: decide from the rule states, as ingestion would."""
    with db.read_session() as session:
        run = runs.get_run(session, run_id)
        verdict, answer = decision_answer(run, load_states(session, run_id).values(), thresholds_for(run))
    return verdict.decision, answer_json(answer)
