"""Heavy reads (chart series, raw record pages) run in a bounded number of slots per process.

Why: each heavy read is a thread holding the GIL for numpy and row conversion, and a
pooled connection. Unbounded, forty of them (anyio's thread pool) leave the event loop
-- which serves ``GET /escalation/decision`` -- a sliver of the interpreter, and can take
every pooled connection. Like ingestion (``monitor.api.ingest_slots``), at most
``read_concurrency`` run at once; the rest wait as coroutines, costing nothing, and one
that waits longer than ``read_wait_seconds`` gets 503 with Retry-After instead of piling up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from fastapi import Request

T = TypeVar("T")


class ReadsBusy(Exception):
    """No read slot came free in time (503 with Retry-After)."""


def read_limiter_of(request: Request) -> anyio.CapacityLimiter:
    """The process's read slots, made on first use (inside the event loop, as anyio requires)."""
    state = request.app.state
    limiter = getattr(state, "read_slots", None)
    if limiter is None:
        limiter = state.read_slots = anyio.CapacityLimiter(state.settings.read_concurrency)
    return limiter


async def run_read(request: Request, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in a worker thread once a read slot is free; ReadsBusy after the wait bound.

    The slot is held until the thread is done, also when the client went away meanwhile
    (anyio lets the thread finish before the cancellation arrives), and released on any error.
    """
    limiter = read_limiter_of(request)
    if not await _acquire(limiter, request.app.state.settings.read_wait_seconds):
        raise ReadsBusy("too many heavy reads at once, retry later")
    try:
        return await anyio.to_thread.run_sync(work, *args)
    finally:
        limiter.release()


async def _acquire(limiter: anyio.CapacityLimiter, wait_seconds: float) -> bool:
    """Take a slot now, or within ``wait_seconds``; False when none came free."""
    try:
        limiter.acquire_nowait()
        return True
    except anyio.WouldBlock:
        pass
    with anyio.move_on_after(wait_seconds):
        await limiter.acquire()
        return True
    return False
