"""Queries on runs: create-or-get, lookup with a row lock, listing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitor.store.async_rows import AsyncRowReader
from monitor.store.database import Database
from monitor.store.decision_board import StoredAnswer
from monitor.store.models import Run, utcnow


class RunNotFound(LookupError):
    """The run id is not known (the API answers 404)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")
        self.run_id = run_id


def get_run(session: Session, run_id: str, *, lock: bool = False) -> Run:
    """The run, optionally locked for update so ingestion for one run is serialised."""
    query = select(Run).where(Run.run_id == run_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    run = session.scalars(query).one_or_none()
    if run is None:
        raise RunNotFound(run_id)
    return run


def create_or_get_run(
    session: Session,
    run_id: str,
    *,
    name: str | None,
    project: str | None,
    config: dict[str, Any] | None,
    escalation_start_epoch: int | None,
) -> tuple[Run, bool]:
    """Idempotent create: an existing run is returned as is, unless fields are given to update.

    Returns (run, created). A resumed trainer sends the same body and keeps its run; a
    changed config updates the stored one (thresholds apply from then on).
    """
    run = session.get(Run, run_id, with_for_update=True)  # ingestion of this run waits (PostgreSQL)
    if run is None:
        run = Run(
            run_id=run_id,
            name=name or run_id,
            project=project or "default",
            config=config or {},
            escalation_start_epoch=escalation_start_epoch,
        )
        session.add(run)
        try:
            session.flush()
        except IntegrityError:  # a concurrent PUT created it first
            session.rollback()
            return get_run(session, run_id, lock=True), False
        return run, True
    _update_run(run, name, project, config, escalation_start_epoch)
    return run, False


def _update_run(
    run: Run, name: str | None, project: str | None, config: dict[str, Any] | None, start: int | None
) -> None:
    """Apply the fields a repeated PUT carries."""
    if name is not None:
        run.name = name
    if project is not None:
        run.project = project
    if config is not None and config != run.config:
        run.config = config
    if start is not None:
        run.escalation_start_epoch = start
    run.updated_at = utcnow()


_STORED_DECISION = select(Run.decision, Run.decision_body, Run.decision_version).where(
    Run.run_id == bindparam("run_id"))
# The same query as psycopg's SQL text, for the async connections (monitor.store.async_rows).
_STORED_DECISION_PSYCOPG = str(_STORED_DECISION.compile(dialect=PGDialect_psycopg()))
# ...and as sqlite3's, for the plain connections of monitor.store.sqlite_rows.
_STORED_DECISION_SQLITE = str(_STORED_DECISION.compile(dialect=SQLiteDialect_pysqlite()))


def stored_decision(db: Database, run_id: str) -> StoredAnswer:
    """The run's stored answer (``body`` None for runs stored before migration 0003)."""
    if db.sqlite_rows is not None:
        row = db.sqlite_rows.fetch_one(_STORED_DECISION_SQLITE, (run_id,))
    else:
        row = db.read_row(_STORED_DECISION.params(run_id=run_id))
    if row is None:
        raise RunNotFound(run_id)
    decision, body, version = row
    return StoredAnswer(run_id, version, decision, body)


async def stored_decision_async(reader: AsyncRowReader, run_id: str) -> StoredAnswer:
    """``stored_decision`` from the event loop, on PostgreSQL."""
    row = await reader.fetch_one(_STORED_DECISION_PSYCOPG, {"run_id": run_id})
    if row is None:
        raise RunNotFound(run_id)
    return StoredAnswer(run_id, row[2], row[0], row[1])


def list_runs(session: Session, project: str | None = None, limit: int = 200, offset: int = 0) -> list[Run]:
    """Runs, most recently updated first."""
    query = select(Run).order_by(Run.updated_at.desc()).limit(limit).offset(offset)
    if project:
        query = query.where(Run.project == project)
    return list(session.scalars(query))
