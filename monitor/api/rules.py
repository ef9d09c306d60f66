"""A run's effective rules: ``GET /api/v1/runs/{id}/rules``, and the 422 for bad rules in a config."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.exceptions import RequestValidationError

from monitor.api.deps import DbDep, require_token
from monitor.rules.describe import describe
from monitor.rules.errors import RuleError
from monitor.rules.ruleset import RuleSet
from monitor.schemas.runs import RUN_ID_PATTERN
from monitor.store import runs
from monitor.store.rule_states import load_states

router = APIRouter(prefix="/api/v1/runs", tags=["rules"], dependencies=[Depends(require_token)])
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="Caller-chosen run id")]


def checked_ruleset(config: dict[str, Any], stored: bool = False) -> RuleSet:
    """The rules of ``config``; bad ones are a 422 locating each field under body.config.

    ``stored``: a config accepted earlier that no longer compiles (the shipped file
    changed) is still a 422, but says the stored config is at fault.
    """
    try:
        return RuleSet.from_run_config(config)
    except RuleError as exc:
        errors = exc.prefixed(["stored_config"] if stored else ["body", "config"])
        raise RequestValidationError(errors) from None


@router.get("/{run_id}/rules")
def get_run_rules(run_id: RunId, db: DbDep) -> dict[str, Any]:
    """Effective rules (shipped + the run's config), each threshold's source, and each rank's state."""
    with db.read_session() as session:
        run = runs.get_run(session, run_id)
        ruleset = checked_ruleset(run.config or {}, stored=True)
        states = load_states(session, run_id).values()
        return {"run_id": run_id, **describe(ruleset, states)}
