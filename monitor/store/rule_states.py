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


def _state_from_payload(rule: str, rank: int, payload: dict[str, Any], digest: str | None = None) -> RuleState:
    """Rebuild a RuleState from its JSON payload (floats may be spelled 'NaN')."""
    known = {f.name for f in fields(RuleState)}
    values = {key: val for key, val in payload.items() if key in known}
    for name in _FLOAT_FIELDS & values.keys():
        values[name] = decode_float(values[name])
    values.update(rule=rule, rank=rank)
    if digest is not None:
        values["digest"] = digest
    return RuleState(**values)


def _rows(session: Session, run_id: str) -> dict[StateKey, RuleStateRow]:
    """The run's state rows, read once per session: ``save_states`` reuses what ``load_states`` read.

    Why: both run in every ingest transaction, under the run's lock, so the second SELECT
    could only return the same rows (it cost about a tenth of a small batch's handling).
    """
    cache: dict[str, dict[StateKey, RuleStateRow]] = session.info.setdefault("rule_state_rows", {})
    rows = cache.get(run_id)
    if rows is None:
        query = select(RuleStateRow).where(RuleStateRow.run_id == run_id)
        rows = cache[run_id] = {(row.rule, row.rank): row for row in session.scalars(query)}
    return rows


def load_states(session: Session, run_id: str) -> dict[StateKey, RuleState]:
    """Every stored rule state of the run keyed by (rule, rank)."""
    return {key: _state_from_payload(row.rule, row.rank, row.payload, row.digest)
            for key, row in _rows(session, run_id).items()}


def save_states(session: Session, run_id: str, states: dict[StateKey, RuleState]) -> None:
    """Upsert the states (the caller holds the run's lock, so no other writer races us)."""
    existing = _rows(session, run_id)
    now = utcnow()
    for key, state in states.items():
        payload = encode_tree(asdict(state))
        row = existing.get(key)
        if row is None:
            row = existing[key] = RuleStateRow(run_id=run_id, rule=key[0], rank=key[1], status=state.status,
                                               payload=payload, digest=state.digest)
            session.add(row)
        elif row.payload != payload:
            row.payload = payload
            row.status = state.status
            row.digest = state.digest
            row.updated_at = now
