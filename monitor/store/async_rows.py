"""One-row reads on PostgreSQL from the event loop, over psycopg's async connections.

The decision poll must stay fast while ingestion keeps the process's worker threads busy.
Through a worker thread, the read has to win the GIL from the ingest threads twice (to
start, and again when PostgreSQL answers), and each win can wait a switch interval or a
scheduler tick. An async connection instead waits for the answer on the event loop.
Connections are autocommit (one round trip per read) and kept in a small per-process pool;
after a connection error (the server restarted) the idle ones are dropped and the read is
tried once more on a fresh connection. SQLite needs none of this: its reads run on the
loop directly (see ``monitor.api.escalation``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from monitor.store.unavailable import DatabaseUnavailable, is_transient_driver_error

CONNECT_TIMEOUT_S = 5


def libpq_conninfo(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://u:p@h/db`` as the libpq URL psycopg connects with."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class AsyncRowReader:
    """A small pool of async autocommit connections for single-row SELECTs."""

    def __init__(self, conninfo: str, size: int = 4) -> None:
        self._conninfo = conninfo
        self._slots = asyncio.Semaphore(size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    async def fetch_one(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of ``query``; ``DatabaseUnavailable`` when PostgreSQL cannot be reached."""
        async with self._slots:
            try:
                try:
                    return await self._fetch(query, params)
                except psycopg.OperationalError:
                    await self._drop_idle()  # a restart kills every pooled connection
                    return await self._fetch(query, params)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # as is_unavailable gates them
                if is_transient_driver_error(exc):
                    raise DatabaseUnavailable(str(exc)) from exc
                raise

    async def _fetch(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> tuple[Any, ...] | None:
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True,
                                                         connect_timeout=CONNECT_TIMEOUT_S)
        try:
            cursor = await conn.execute(query, params)
            row = await cursor.fetchone()
        except BaseException:
            await conn.close()
            raise
        self._idle.append(conn)
        return row

    async def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    async def close(self) -> None:
        """Close the pooled connections (shutdown)."""
        await self._drop_idle()
