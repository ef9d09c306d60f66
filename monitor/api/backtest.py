"""What-if endpoint: replay a stored run with other thresholds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.api.deps import DbDep, require_token
from monitor.api.errors import InvalidConfig, validation_error
from monitor.api.runs import RunId
from monitor.backtesting import run_backtest
from monitor.rules.config_sections import ConfigError
from monitor.rules.errors import RuleError
from monitor.schemas.text import check_json_tree

router = APIRouter(prefix="/api/v1/runs", tags=["backtest"], dependencies=[Depends(require_token)])


class BacktestRequest(BaseModel):
    """Config overrides merged into the run's stored config (same keys as the trainer YAML)."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(default_factory=dict, examples=[{"hyper_lora": {"lora_max_norm": 2.0}}])

    @field_validator("config")
    @classmethod
    def _storable_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return check_json_tree(config, "config")


@router.post("/{run_id}/backtest")
def backtest_run(run_id: RunId, body: BacktestRequest, db: DbDep) -> dict[str, Any]:
    """When would each rule have fired, and when would the run first have paused?"""
    try:
        return run_backtest(db, run_id, body.config)
    except ConfigError as exc:  # one 422 item per bad key path, located, repeating no value
        raise validation_error([(("body", "config", *item.loc), item.msg, item.type)
                                for item in exc.problems]) from None
    except RuleError as exc:  # locs are paths in the merged config (the run's plus the overrides)
        raise RequestValidationError(exc.prefixed(["body", "config"])) from None
    except ValueError as exc:
        raise InvalidConfig(str(exc)) from exc
