"""Which database errors mean "unavailable, retry" (503) rather than a bug (500).

SQLite raises ``OperationalError`` for a bad JSON path as much as for a held lock, and
psycopg for a cancelled query as much as for a refused connection; clients retry a 503
forever, so only errors that a retry can cure count: no connection, server shutting
down, lock contention.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLite primary result codes: BUSY, LOCKED, IOERR, CANTOPEN.
SQLITE_TRANSIENT_CODES = frozenset({5, 6, 10, 14})
SQLITE_TRANSIENT_MESSAGES = ("database is locked", "database table is locked", "unable to open database file",
                             "disk i/o error")
# PostgreSQL SQLSTATEs: connection exceptions (class 08), admin/crash shutdown, cannot connect now,
# too many connections, serialization failure, deadlock, lock not available.
POSTGRES_TRANSIENT_STATES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01", "55P03")


class DatabaseUnavailable(Exception):
    """Raised by reads that bypass SQLAlchemy (``monitor.store.async_rows``); the API answers 503."""


def is_unavailable(exc: DBAPIError) -> bool:
    """True when the database could not be reached or was busy, so the same request may succeed later."""
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, (OperationalError, InterfaceError)):  # data, integrity, programming errors
        return False
    return is_transient_driver_error(exc.orig)


def is_transient_driver_error(orig: BaseException | None) -> bool:
    """The same test on the driver's own exception (sqlite3 or psycopg)."""
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in SQLITE_TRANSIENT_CODES
    if type(orig).__module__.startswith("sqlite3"):
        return any(text in str(orig).lower() for text in SQLITE_TRANSIENT_MESSAGES)
    if type(orig).__module__.startswith("psycopg"):
        state = getattr(orig, "sqlstate", None)
        # No SQLSTATE: the client library failed (connection refused, closed, lost mid-query).
        return state is None or state.startswith(POSTGRES_TRANSIENT_STATES)
    return False
