"""Hand ingestion work to the process's ingest executor (``monitor.ingest.executors``).

The executor caps how many ingest requests run at once (``ingest_concurrency``); the
rest wait as coroutines, costing nothing. Every write transaction takes the run lock or
SQLite's single write lock anyway, so more at once would only queue there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request

from monitor.ingest.executors import IngestExecutor, ThreadIngest

T = TypeVar("T")


def ingest_executor_of(request: Request) -> IngestExecutor:
    """The executor the lifespan started; without a lifespan, threads (made on first use)."""
    state = request.app.state
    executor = getattr(state, "ingest", None)
    if executor is None:
        executor = state.ingest = ThreadIngest(state.db, state.settings)
    return executor


async def run_ingest(request: Request, work: Callable[..., T], *args: Any) -> T:
    """``work(db, settings, *args)`` once a slot is free, off the event loop."""
    return await ingest_executor_of(request).run(work, *args)
