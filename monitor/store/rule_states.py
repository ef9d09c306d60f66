"""Loading and saving rule states, so every server process evaluates from the same place."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, fields
from typing import Any

from sqlalchemy import or_, select
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
        values["definition_id"] = digest
    return RuleState(**values)


def _rows(session: Session, run_id: str, ranks: Collection[int] | None = None) -> dict[StateKey, RuleStateRow]:
    """The run's state rows, read once per session: ``save_states`` reuses what ``load_states`` read.

    Why: both run in every ingest transaction, under the run's lock, so the second SELECT
    could only return the same rows (it cost about a tenth of a small batch's handling).
    With ``ranks``, only those ranks' rows plus every row that is not 'ok' are read: a
    request of 16 ranks of a 256-rank run touches 16 ranks' states, and the decision needs
    only the pending and firing ones of the others (an 'ok' state says nothing to it).
    """
    cache: dict[str, tuple[set[int] | None, dict[StateKey, RuleStateRow]]] = session.info.setdefault(
        "rule_state_rows", {})
    covered, rows = cache.get(run_id, (set(), {}))
    if run_id in cache and (covered is None or (ranks is not None and set(ranks) <= covered)):
        return rows
    query = select(RuleStateRow).where(RuleStateRow.run_id == run_id)
    if ranks is not None:
        query = query.where(or_(RuleStateRow.rank.in_(sorted(set(ranks))), RuleStateRow.status != "ok"))
    for row in session.scalars(query):
        rows.setdefault((row.rule, row.rank), row)  # rows read before stay the objects saving updates
    cache[run_id] = (None if ranks is None or covered is None else covered | set(ranks), rows)
    return rows


def load_states(session: Session, run_id: str, ranks: Collection[int] | None = None) -> dict[StateKey, RuleState]:
    """The run's stored rule states keyed by (rule, rank): all, or ``ranks``' plus every non-ok one.

    Evaluate only readings of ``ranks`` against what this returns: states of other ranks
    that are 'ok' are not in it (their rows are not read, and saving never touches them).
    """
    rows = _rows(session, run_id, ranks)
    return {key: _state_from_payload(row.rule, row.rank, row.payload, row.digest) for key, row in rows.items()}


def save_states(session: Session, run_id: str, states: dict[StateKey, RuleState]) -> None:
    """Upsert the states (the caller holds the run's lock, so no other writer races us)."""
    cache = session.info.get("rule_state_rows", {})
    existing = cache[run_id][1] if run_id in cache else _rows(session, run_id)  # what load_states read
    now = utcnow()
    for key, state in states.items():
        payload = encode_tree(asdict(state))
        row = existing.get(key)
        if row is None:
            row = existing[key] = RuleStateRow(run_id=run_id, rule=key[0], rank=key[1], status=state.status,
                                               payload=payload, digest=state.definition_id)
            session.add(row)
        elif row.payload != payload:
            row.payload = payload
            row.status = state.status
            row.digest = state.definition_id
            row.updated_at = now
