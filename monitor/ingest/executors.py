"""Where a server process runs its ingestion work: ``process`` (default) or ``thread`` mode."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio

from monitor.ingest.process_pool import ProcessIngest
from monitor.settings import Settings
from monitor.store.database import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


class IngestExecutor(Protocol):
    """Runs ``work(db, settings, *args)`` (a function of ``monitor.ingest.work``) off the event loop."""

    async def start(self) -> None: ...

    async def run(self, work: Callable[..., T], *args: Any) -> T: ...

    async def close(self) -> None: ...


class ThreadIngest:
    """At most ``ingest_concurrency`` jobs at once, in worker threads of this process.

    The mode for an in-memory SQLite database (a child process would not see it) and for
    an app used without its lifespan; it shares this process's GIL with serving.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._limiter: anyio.CapacityLimiter | None = None

    async def start(self) -> None:
        self._limiter = anyio.CapacityLimiter(self._settings.ingest_concurrency)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:  # made inside the event loop, on first use without a lifespan
            await self.start()
        return await anyio.to_thread.run_sync(work, self._db, self._settings, *args, limiter=self._limiter)

    async def close(self) -> None:
        """Nothing to stop: the threads belong to anyio's pool."""


def ingest_executor(settings: Settings, db: Database) -> IngestExecutor:
    """The executor ``settings.ingest_mode`` asks for, threads where processes cannot work."""
    if settings.ingest_mode == "thread":
        return ThreadIngest(db, settings)
    if db.is_in_memory:
        log.info("in-memory SQLite: ingestion runs in threads (a worker process could not see the database)")
        return ThreadIngest(db, settings)
    return ProcessIngest(settings, db.decisions)
