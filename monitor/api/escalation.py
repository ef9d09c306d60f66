"""The trainer's meta-escalation question: may I escalate in epoch E, or pause?

The trainer asks at the start of epoch E, having closed epoch E-1 (``?epoch=E``; without
it, E is the last closed epoch + 1). Escalation is gated -- always ``continue`` -- while
E < the run's escalation start epoch, so E == start is the first epoch a pause can hold.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from monitor.api.deps import DbDep, require_token
from monitor.evaluation import answer_json, decision_answer, ruleset_for
from monitor.schemas.diagnostics import MAX_INDEX
from monitor.metrics import observe_decision
from monitor.schemas.escalation import DecisionAnswer
from monitor.schemas.runs import RUN_ID_PATTERN
from monitor.store import runs
from monitor.store.async_rows import AsyncRowReader
from monitor.store.database import Database
from monitor.store.decision_board import StoredAnswer
from monitor.store.rule_states import load_states

DECISION_PATH = "/escalation/decision"

router = APIRouter(tags=["escalation"], dependencies=[Depends(require_token)])


@router.get(DECISION_PATH, response_class=Response,
            responses={200: {"model": DecisionAnswer, "description": "The run's current decision"},
                       404: {"description": "Unknown run"}})
async def escalation_decision(
    request: Request, db: DbDep, run_id: Annotated[str, Query(pattern=RUN_ID_PATTERN)],
    epoch: Annotated[int | None, Query(ge=0, le=MAX_INDEX, description=(
        "The epoch the trainer asks to escalate in (default: the last closed epoch + 1); "
        "the answer's for_epoch"))] = None,
) -> Response:
    """Serve the answer the run's last write stored, so every server process answers the same.

    An ``epoch`` other than the stored answer's ``for_epoch`` is decided from the stored
    rule states (the gate is the only thing that depends on it).

    Most polls never get here: ``monitor.api.decision_poll`` answers them before routing.
    This route serves the rest (runs stored before migration 0003, errors) and documents
    the endpoint.
    """
    answer = await stored_answer(request.app.state, run_id)
    decision, body = answer.decision, answer.body
    if body is None or not answers_epoch(body, epoch):
        decision, body = await run_in_threadpool(_computed_answer, db, run_id, epoch)
    observe_decision(decision)
    return Response(content=body, media_type="application/json")


async def stored_answer(state: Any, run_id: str) -> StoredAnswer:
    """The run's stored answer, read without leaving the event loop where that is cheaper.

    PostgreSQL: from the process's decision board, else over an async connection
    (``monitor.store.async_rows``), and the board keeps what was read. SQLite: straight
    from the file (a WAL snapshot never waits for writers, and costs less than the hop
    to a thread that must then win the GIL from the ingest threads).
    """
    db: Database = state.db
    reader: AsyncRowReader | None = getattr(state, "row_reader", None)  # set by the lifespan
    if db.is_sqlite:
        return runs.stored_decision(db, run_id)
    known = db.decisions.answer(run_id)
    if known is not None:
        return known
    generation = db.decisions.generation
    if reader is not None:
        answer = await runs.stored_decision_async(reader, run_id)
    else:
        answer = await run_in_threadpool(runs.stored_decision, db, run_id)
    if generation is not None:  # listening since before the read: later changes will arrive
        db.decisions.offer(answer, generation)
    return answer


def answers_epoch(body: str, epoch: int | None) -> bool:
    """Whether a stored answer answers the question for ``epoch`` (None: the default one)."""
    return epoch is None or json.loads(body).get("for_epoch") == epoch


def _computed_answer(db: Database, run_id: str, epoch: int | None = None) -> tuple[str, str]:
    """Decide from the rule states, as ingestion would: for another epoch, or runs stored before 0003."""
    with db.read_session() as session:
        run = runs.get_run(session, run_id)
        states = load_states(session, run_id).values()
        verdict, answer = decision_answer(run, states, ruleset_for(run), for_epoch=epoch)
    return verdict.decision, answer_json(answer)
