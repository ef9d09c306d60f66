"""Engine and session factories for SQLite (embedded default) and PostgreSQL (psycopg 3).

Writers on SQLite take the write lock up front (``BEGIN IMMEDIATE``) so two transactions
never deadlock upgrading a read lock; readers use WAL snapshots and never block writers.
On PostgreSQL, per-run serialisation comes from ``SELECT ... FOR UPDATE`` on the run row.

Hot one-row reads go through ``Database.read_row``: a second, autocommit engine without
pre-ping, so such a read is one statement (on PostgreSQL one round trip instead of four:
ping, BEGIN, SELECT, ROLLBACK); a connection found dead is retried once on a fresh one.
The decision poll on an SQLite file skips SQLAlchemy altogether (``sqlite_rows``). The
service's PostgreSQL decision reads use ``monitor.store.async_rows`` instead, and fall back
to ``read_row`` only without it; most PostgreSQL polls need no read at all
(``monitor.store.decision_board``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Executable, Row, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from monitor.store.decision_board import DecisionBoard, take_staged
from monitor.store.sqlite_rows import SqliteRowReader

WRITE_OPTION = "monitor_write"


def normalise_url(url: str) -> str:
    """Map plain ``postgresql://`` URLs to the psycopg 3 driver we ship."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(engine: Engine) -> None:
    """WAL, a generous busy timeout, foreign keys; the driver's own transaction handling off."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # BEGIN is emitted by _explicit_begin (or never: autocommit)
        cursor = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


def _explicit_begin(engine: Engine) -> None:
    """``BEGIN IMMEDIATE`` for write sessions, a deferred ``BEGIN`` for the rest."""

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str, pool_size: int = 10, *, autocommit: bool = False) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder if needed.

    ``autocommit``: every statement on its own, no pre-ping (the engine behind ``read_row``).
    """
    url = normalise_url(url)
    parsed = make_url(url)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)
        _sqlite_pragmas(engine)
        if not autocommit:
            _explicit_begin(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=not autocommit, **options)


class Database:
    """Owns the engine; hands out read and write sessions."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._pool_size = pool_size
        self._row_engine: Engine | None = None
        self.decisions = DecisionBoard()  # fed by committed writes here and, on PostgreSQL, by NOTIFY
        plain_file = self.is_sqlite and not self.is_in_memory and not self.engine.url.query  # no URI options
        file = self.engine.url.database if plain_file else None
        self.sqlite_rows = SqliteRowReader(file) if file else None  # the poll's raw read (sqlite_rows)

    @property
    def is_in_memory(self) -> bool:
        """An SQLite database in this process's memory: no other process can open it."""
        return self.is_sqlite and self.engine.url.database in (None, "", ":memory:")

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for queries; rolled back at the end."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._sessions() as session:
            session.connection(execution_options={WRITE_OPTION: True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            for answer in take_staged(session):  # committed: this process serves it from now on
                self.decisions.offer(answer)

    def read_row(self, statement: Executable) -> Row[Any] | None:
        """One statement's first row, on the autocommit engine (made on first use).

        Without pre-ping a pooled connection may be dead (database restarted): that raises
        with ``connection_invalidated`` and the pool drops it, so one retry gets a fresh one.
        """
        try:
            return self._first_row(statement)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return self._first_row(statement)

    def _first_row(self, statement: Executable) -> Row[Any] | None:
        if self._row_engine is None:
            self._row_engine = make_engine(self.url, self._pool_size, autocommit=True)
        with self._row_engine.connect() as conn:
            return conn.execute(statement).first()

    def dispose(self) -> None:
        """Close pooled connections (shutdown, tests)."""
        self.engine.dispose()
        if self.sqlite_rows is not None:
            self.sqlite_rows.close()
        if self._row_engine is not None:
            self._row_engine.dispose()
