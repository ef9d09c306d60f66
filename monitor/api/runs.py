"""Runs: create-or-get, list, show, history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from monitor.api.deps import DbDep, SettingsDep, require_token
from monitor.api.errors import validation_error
from monitor.api.paging import Limit, Offset
from monitor.api.rules import checked_ruleset
from monitor.config_changes import record_config_change
from monitor.evaluation import dashboard_link, refresh_decision
from monitor.rules.config_sections import ConfigError, check_sections, readable_sections
from monitor.rules.ruleset import RuleSet
from monitor.schemas.config_tree import CheckedConfig, check_config
from monitor.schemas.runs import RUN_ID_PATTERN, RunCreated, RunOut, RunUpsert
from monitor.schemas.text import StorableStr
from monitor.settings import Settings
from monitor.store import events, runs

router = APIRouter(prefix="/api/v1/runs", tags=["runs"], dependencies=[Depends(require_token)])
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="Caller-chosen run id")]


@router.put("/{run_id}", response_model=RunCreated)
def upsert_run(run_id: RunId, body: RunUpsert, db: DbDep, settings: SettingsDep, response: Response) -> dict[str, Any]:
    """Create the run, or return it unchanged for a resumed trainer (idempotent).

    A changed config replaces the stored one and is recorded as a ``config.changed`` run
    event (what changed, from what, and what it did to the decision).
    """
    checked, ruleset = _checked_config(body.config, settings)
    fields = runs.RunFields(body.name, body.project, checked, body.escalation_start_epoch)
    try:
        with db.write_session() as session:
            upserted = runs.upsert_run(session, run_id, fields)
            decision_before = upserted.run.decision
            refresh_decision(session, upserted.run, settings.public_url)
            if upserted.replaced_config is not None:
                record_config_change(session, upserted.run, upserted.replaced_config, decision_before,
                                     dashboard_link(settings.public_url, run_id))
            session.flush()
            out = RunOut.model_validate(upserted.run).model_dump()
    except runs.ConfigNotStored as exc:
        raise validation_error([(("body", "config"), str(exc), "value_error")]) from None
    response.status_code = status.HTTP_201_CREATED if upserted.created else status.HTTP_200_OK
    if ruleset is None:  # no config sent: report on the one stored
        ruleset = checked_ruleset(readable_sections(out.get("config")), stored=True)
    return {**out, "created": upserted.created, "config_report": ruleset.report}


def _checked_config(config: dict[str, Any] | None, settings: Settings) -> tuple[CheckedConfig | None, RuleSet | None]:
    """The config within bounds, with mapping sections and usable rules, or a 422 naming each bad key path."""
    if config is None:
        return None, None
    try:
        checked = check_config(config, max_depth=settings.max_config_depth, max_bytes=settings.max_config_bytes)
        check_sections(config)
    except ConfigError as exc:
        raise validation_error([(("body", "config", *item.loc), item.msg, item.type)
                                for item in exc.problems]) from None
    return checked, checked_ruleset(config)


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
def get_run_events(run_id: RunId, db: DbDep, limit: Limit = 1000, offset: Offset = 0) -> dict[str, Any]:
    """Rule events (fired/resolved), decision changes and run events (``config.changed``) of a run.

    Each list is oldest first and paged alike: ``limit`` items of each from ``offset``; a
    list shorter than ``limit`` has no more pages.
    """
    with db.read_session() as session:
        runs.get_run(session, run_id)
        return {
            "run_id": run_id,
            "limit": limit,
            "offset": offset,
            "rule_events": events.list_rule_events(session, run_id, limit, offset),
            "decisions": events.list_decisions(session, run_id, limit, offset),
            "run_events": events.list_run_events(session, run_id, limit, offset),
        }
