"""One-row reads on SQLite without SQLAlchemy, for the decision poll on the event loop.

Through SQLAlchemy (pool checkout, execution context, result processing) the poll's
primary-key read cost ~200 us of interpreter time on the dev box; the same SELECT on a
plain ``sqlite3`` connection costs ~6 us. The poll runs on the event loop, so that time
is time every other request of the process waits. Each thread gets its own connection
(autocommit, read-only: every SELECT reads the latest committed snapshot of the WAL). A
short busy timeout, because a wait here stalls the event loop: a reader in WAL mode is
only ever kept waiting during WAL recovery, and then a 503 and the client's retry are
better than a frozen process. Errors are raised as SQLAlchemy's, so the service's usual
handlers (503 for a busy or missing database, 500 for a bad query) answer them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

BUSY_TIMEOUT_S = 1.0


class SqliteRowReader:
    """Per-thread read-only ``sqlite3`` connections to one database file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def fetch_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """The first row of ``sql``; driver errors come as ``sqlalchemy.exc.DBAPIError``."""
        try:
            return self._connection().execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection (shutdown, tests)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
        self._local = threading.local()
