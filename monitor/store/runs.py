"""Queries on runs: create-or-get, lookup with a row lock, listing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from monitor.schemas.config_tree import CheckedConfig, canonical_json, empty_config, hashed_config
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
    """The run, optionally locked for update so ingestion for one run is serialised.

    Locked (the ingest path), the config column is loaded only if something reads it.
    """
    query = select(Run).where(Run.run_id == run_id)
    if lock:  # ingestion: thresholds come by config_sha256, so the (maybe large) config stays unread
        query = query.options(defer(Run.config))
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    run = session.scalars(query).one_or_none()
    if run is None:
        raise RunNotFound(run_id)
    return run


class ConfigNotStored(ValueError):
    """The database gave back a different config than was written (the PUT is rolled back)."""


@dataclass(frozen=True)
class RunFields:
    """What a PUT may set; None leaves a field as it is."""

    name: str | None = None
    project: str | None = None
    config: CheckedConfig | None = None
    escalation_start_epoch: int | None = None


@dataclass(frozen=True)
class Upserted:
    """The run, whether this call created it, and the config it replaced (None: config unchanged)."""

    run: Run
    created: bool
    replaced_config: dict[str, Any] | None = None


def create_or_get_run(session: Session, run_id: str, *, name: str | None = None, project: str | None = None,
                      config: dict[str, Any] | None = None,
                      escalation_start_epoch: int | None = None) -> tuple[Run, bool]:
    """(run, created) of :func:`upsert_run` for callers with a config of their own (tools, tests): unbounded."""
    checked = None if config is None else hashed_config(config)
    upserted = upsert_run(session, run_id, RunFields(name, project, checked, escalation_start_epoch))
    return upserted.run, upserted.created


def upsert_run(session: Session, run_id: str, fields: RunFields) -> Upserted:
    """Idempotent create: an existing run is returned as is, unless fields are given to update.

    A resumed trainer sends the same body and keeps its run; a changed config updates the
    stored one (thresholds apply from then on) and is returned in ``replaced_config`` so the
    caller can record the change. A new config is read back before commit (ConfigNotStored).
    """
    run = session.get(Run, run_id, with_for_update=True)  # ingestion of this run waits (PostgreSQL)
    if run is None:
        run = _insert_run(session, run_id, fields)
        if run is not None:
            _check_read_back(session, run_id, fields.config)
            return Upserted(run, True)
        run = get_run(session, run_id, lock=True)  # a concurrent PUT created it first: update that one
    wrote_config, replaced = _update_run(run, fields)
    if wrote_config:
        session.flush()
        _check_read_back(session, run_id, fields.config)
    return Upserted(run, False, replaced)


def _insert_run(session: Session, run_id: str, fields: RunFields) -> Run | None:
    """The new run, or None when a concurrent PUT inserted it first."""
    config = fields.config or empty_config()
    run = Run(run_id=run_id, name=fields.name or run_id, project=fields.project or "default",
              config=config.tree, config_sha256=config.sha256, escalation_start_epoch=fields.escalation_start_epoch)
    session.add(run)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return None
    return run


def _update_run(run: Run, fields: RunFields) -> tuple[bool, dict[str, Any] | None]:
    """Apply the fields a repeated PUT carries; returns (config written, config it replaced if different)."""
    wrote_config, replaced = False, None
    if fields.name is not None:
        run.name = fields.name
    if fields.project is not None:
        run.project = fields.project
    if fields.config is not None and fields.config.sha256 != run.config_sha256:
        previous = run.config or {}
        if canonical_json(previous) != fields.config.text:  # not just a digest missing (run stored before 0005)
            replaced = previous
        run.config, run.config_sha256 = fields.config.tree, fields.config.sha256
        wrote_config = True
    if fields.escalation_start_epoch is not None:
        run.escalation_start_epoch = fields.escalation_start_epoch
    run.updated_at = utcnow()
    return wrote_config, replaced


def _check_read_back(session: Session, run_id: str, config: CheckedConfig | None) -> None:
    """What the database returns for the config is what was written, or ConfigNotStored.

    Why: a config that cannot be read back must not be committed, or every later read of
    the run (and the run list) fails for everyone.
    """
    if config is None:
        return
    stored = session.scalar(select(Run.config).where(Run.run_id == run_id))
    if canonical_json(stored) != config.text:
        raise ConfigNotStored("the config did not read back unchanged from the database; nothing was stored")


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
