"""Loading and saving rule states, so every server process evaluates from the same place."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.floats import decode_float, encode_tree
from monitor.rules.types import RuleState
from monitor.store.models import RuleStateRow, utcnow

StateKey = tuple[str, int]
_FLOAT_FIELDS = {"value", "threshold"}


def _state_from_payload(rule: str, rank: int, payload: dict[str, Any]) -> RuleState:
    """Rebuild a RuleState from its JSON payload (floats may be spelled 'NaN')."""
    known = {f.name for f in fields(RuleState)}
    values = {key: val for key, val in payload.items() if key in known}
    for name in _FLOAT_FIELDS & values.keys():
        values[name] = decode_float(values[name])
    values.update(rule=rule, rank=rank)
    return RuleState(**values)


def load_states(session: Session, run_id: str) -> dict[StateKey, RuleState]:
    """Every stored rule state of the run keyed by (rule, rank)."""
    rows = session.scalars(select(RuleStateRow).where(RuleStateRow.run_id == run_id))
    return {(row.rule, row.rank): _state_from_payload(row.rule, row.rank, row.payload) for row in rows}


def save_states(session: Session, run_id: str, states: dict[StateKey, RuleState]) -> None:
    """Upsert the states (the caller holds the run's lock, so no other writer races us)."""
    existing = {
        (row.rule, row.rank): row
        for row in session.scalars(select(RuleStateRow).where(RuleStateRow.run_id == run_id))
    }
    now = utcnow()
    for key, state in states.items():
        payload = encode_tree(asdict(state))
        row = existing.get(key)
        if row is None:
            session.add(RuleStateRow(run_id=run_id, rule=key[0], rank=key[1], status=state.status, payload=payload))
        elif row.payload != payload:
            row.payload = payload
            row.status = state.status
            row.updated_at = now
