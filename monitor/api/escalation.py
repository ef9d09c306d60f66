"""The trainer's meta-escalation question: may escalation go on, or pause?"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from monitor.api.deps import DbDep, require_token
from monitor.evaluation import start_epoch, thresholds_for
from monitor.metrics import observe_decision
from monitor.rules.decision import decide
from monitor.schemas.runs import RUN_ID_PATTERN
from monitor.store import runs
from monitor.store.rule_states import load_states

router = APIRouter(tags=["escalation"], dependencies=[Depends(require_token)])


@router.get("/escalation/decision")
def escalation_decision(
    db: DbDep, run_id: Annotated[str, Query(pattern=RUN_ID_PATTERN)]
) -> dict[str, Any]:
    """Answer from the stored rule states, so every server process answers the same."""
    with db.read_session() as session:
        run = runs.get_run(session, run_id)
        states = load_states(session, run_id)
        thresholds = thresholds_for(run)
        start = start_epoch(run, thresholds)
        verdict = decide(states.values(), thresholds, run.last_epoch, run.last_step, start)
    observe_decision(verdict.decision)
    body = verdict.to_dict()
    body.update(run_id=run_id, epoch=run.last_epoch, step=run.last_step, escalation_start_epoch=start)
    return body
