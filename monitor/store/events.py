"""Rule events, decision changes and run events: the history behind the dashboard timelines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.floats import decode_float, encode_float, encode_tree
from monitor.rules.types import RuleTransition
from monitor.store.models import DecisionRecord, RuleEvent, RunEvent


def add_rule_events(session: Session, run_id: str, transitions: Sequence[RuleTransition]) -> None:
    """One row per fired/resolved transition."""
    for item in transitions:
        value = encode_float(item.value)
        session.add(
            RuleEvent(
                run_id=run_id,
                rule=item.rule,
                rank=item.rank,
                kind=item.kind,
                severity=item.severity,
                metric=item.metric[:200],
                value=None if value is None else str(value),
                threshold=item.threshold,
                step=item.step,
                epoch=item.epoch,
            )
        )


def add_decision(session: Session, run_id: str, decision: str, reasons: list[Any], step: int | None,
                 epoch: int | None) -> None:
    """Remember that the decision changed."""
    session.add(DecisionRecord(run_id=run_id, decision=decision, reasons=encode_tree(reasons), step=step,
                               epoch=epoch))


def add_run_event(session: Session, run_id: str, kind: str, payload: dict[str, Any]) -> None:
    """Something done to the run (``config.changed``), in the caller's transaction."""
    session.add(RunEvent(run_id=run_id, kind=kind, payload=payload))


def list_run_events(session: Session, run_id: str, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
    """Run events, oldest first; ``id`` orders them across pages."""
    query = (select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
             .limit(limit).offset(offset))
    return [{"id": row.id, "kind": row.kind, "at": row.created_at.isoformat(), **row.payload}
            for row in session.scalars(query)]


def list_rule_events(session: Session, run_id: str, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
    """Rule events of a run, oldest first, as JSON-ready dicts."""
    query = (select(RuleEvent).where(RuleEvent.run_id == run_id).order_by(RuleEvent.id)
             .limit(limit).offset(offset))
    return [
        {
            "rule": row.rule,
            "rank": row.rank,
            "kind": row.kind,
            "severity": row.severity,
            "metric": row.metric,
            "value": encode_float(decode_float(row.value)),
            "threshold": encode_float(row.threshold),
            "step": row.step,
            "epoch": row.epoch,
            "at": row.created_at.isoformat(),
        }
        for row in session.scalars(query)
    ]


def list_decisions(session: Session, run_id: str, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
    """Decision changes of a run, oldest first."""
    query = (select(DecisionRecord).where(DecisionRecord.run_id == run_id).order_by(DecisionRecord.id)
             .limit(limit).offset(offset))
    return [
        {"decision": row.decision, "reasons": row.reasons, "step": row.step, "epoch": row.epoch,
         "at": row.created_at.isoformat()}
        for row in session.scalars(query)
    ]
