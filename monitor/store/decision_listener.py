"""Keeps a process's ``DecisionBoard`` current: ``LISTEN`` on PostgreSQL, reconnecting as needed.

Runs as a task on the event loop (where the decision poll reads the board). When the
connection drops -- PostgreSQL restarted, the backend was terminated -- the board is
emptied and refuses offers until ``LISTEN`` is in effect again, so polls read the
database in between and never serve an answer a missed notification replaced.
TCP keepalives bound how long a silently dead connection goes unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg

from monitor.store.decision_board import CHANNEL, DecisionBoard, StoredAnswer

log = logging.getLogger(__name__)

APPLICATION_NAME = "monitor-decision-listener"
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 10.0
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class DecisionListener:
    """One ``LISTEN`` connection feeding ``board``; ``start``/``stop`` from the lifespan."""

    def __init__(self, conninfo: str, board: DecisionBoard) -> None:
        self._conninfo = conninfo
        self._board = board
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name=APPLICATION_NAME)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._board.listening_stopped()

    async def _listen_forever(self) -> None:
        retry_s = FIRST_RETRY_S
        while True:
            began = time.monotonic()
            try:
                await self._listen_once()
            except (psycopg.Error, OSError) as exc:
                log.warning("decision notifications interrupted (%s); polls read the database, "
                            "retrying in %.1f s", exc, retry_s)
            finally:
                self._board.listening_stopped()
            if time.monotonic() - began > MAX_RETRY_S:  # it had been working: a fresh drop
                retry_s = FIRST_RETRY_S
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, MAX_RETRY_S)

    async def _listen_once(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=5, **KEEPALIVE
        ) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self._board.listening_started()
            log.debug("listening for decision notifications")
            async for note in conn.notifies():
                self._apply(note.payload)

    def _apply(self, payload: str) -> None:
        try:
            answer = StoredAnswer.from_payload(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed decision notification: %.200r", payload)
            return
        self._board.offer(answer)
