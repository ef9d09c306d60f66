"""Runs: create-or-get, list, show, history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from monitor.api.deps import DbDep, SettingsDep, require_token
from monitor.api.paging import Limit, Offset
from monitor.api.rules import checked_ruleset
from monitor.evaluation import refresh_decision
from monitor.schemas.runs import RUN_ID_PATTERN, RunCreated, RunOut, RunUpsert
from monitor.schemas.text import StorableStr
from monitor.store import events, runs

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Depends(require_token)])
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="Caller-chosen run id")]


@router.put("/{run_id}", response_model=RunCreated)
def upsert_run(run_id: RunId, body: RunUpsert, db: DbDep, settings: SettingsDep, response: Response) -> dict[str, Any]:
    """Create the run, or return it unchanged for a resumed trainer (idempotent)."""
    ruleset = checked_ruleset(body.config) if body.config is not None else None
    with db.write_session() as session:
        run, created = runs.create_or_get_run(
            session, run_id, name=body.name, project=body.project, config=body.config,
            escalation_start_epoch=body.escalation_start_epoch,
        )
        refresh_decision(session, run, settings.public_url)
        session.flush()
        out = RunOut.model_validate(run).model_dump()
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    report = ruleset.report if ruleset is not None and out.get("config") == body.config else \
        checked_ruleset(out.get("config") or {}, stored=True).report
    return {**out, "created": created, "config_report": report}


@router.get("", response_model=list[RunOut])
def list_runs(
    db: DbDep,
    project: Annotated[StorableStr | None, Query(max_length=200)] = None,
    limit: Limit = 200,
    offset: Offset = 0,
) -> list[Any]:
    """Runs, most recently updated first."""
    with db.read_session() as session:
        return [RunOut.model_validate(run) for run in runs.list_runs(session, project, limit, offset)]


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: RunId, db: DbDep) -> Any:
    """One run."""
    with db.read_session() as session:
        return RunOut.model_validate(runs.get_run(session, run_id))


@router.get("/{run_id}/events")
def get_run_events(run_id: RunId, db: DbDep) -> dict[str, Any]:
    """Rule events (fired/resolved) and decision changes of a run."""
    with db.read_session() as session:
        runs.get_run(session, run_id)
        return {
            "run_id": run_id,
            "rule_events": events.list_rule_events(session, run_id),
            "decisions": events.list_decisions(session, run_id),
        }
