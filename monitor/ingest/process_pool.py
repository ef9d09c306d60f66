"""A server process's ingest workers: child processes that run the ingestion transactions.

Why processes: run in a thread, ingestion (parse, validate, insert, rule evaluation:
all Python) held the server process's GIL about 80 % of the time while 16 runs ingested
flat out, and every decision poll had to win the interpreter back from it, several
times per request. A child process has an interpreter of its own; the server process
only moves bytes through a pipe, on its event loop (no helper threads), and keeps its
GIL for serving.

Each worker does one job at a time; ``ingest_concurrency`` workers per server process,
and a request waits (as a coroutine) for an idle one. A worker that dies is replaced at
the next job; the request it was doing gets 503, and its retry is safe because
ingestion is idempotent on (run, rank, step). What a worker's transaction committed --
decision answers, metric counts -- is applied here before the request is answered, so
a trainer's next poll sees its own write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from monitor.ingest.child_process import ChildProcess
from monitor.ingest.failures import IngestWorkerLost
from monitor.ingest.frames import encode, read_frame_async
from monitor.ingest.messages import Job, Ready, Reply
from monitor.lifeline import SERVER_PID_ENV
from monitor.metrics import MULTIPROC_ENV, apply_counts
from monitor.settings import Settings
from monitor.store.decision_board import DecisionBoard

log = logging.getLogger(__name__)
T = TypeVar("T")
WORKER_MODULE = "monitor.ingest.child"
STOP_TIMEOUT_S = 30.0


class _Worker:
    """One child process; ``ready`` once its ``Ready`` frame was read, ``busy`` while it has a job."""

    def __init__(self, process: ChildProcess) -> None:
        self.process = process
        self.ready = False
        self.lost = False
        self.busy = False
        self.watcher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def exchange(self, frame: bytes) -> Reply:
        """Send one job, wait for its reply (reading the ``Ready`` frame first, once)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        if not self.ready:
            greeting = await read_frame_async(self.process.stdout)
            if not isinstance(greeting, Ready):
                raise RuntimeError(f"ingest worker said {type(greeting).__name__} instead of Ready")
            self.ready = True
        self.process.stdin.write(frame)
        await self.process.stdin.drain()
        reply = await read_frame_async(self.process.stdout)
        if not isinstance(reply, Reply):
            raise RuntimeError(f"ingest worker replied {type(reply).__name__}")
        return reply


class ProcessIngest:
    """``ingest_concurrency`` ingest worker processes; ``start``/``close`` from the lifespan."""

    def __init__(self, settings: Settings, board: DecisionBoard) -> None:
        self._settings_frame = encode(settings.model_dump())
        self._count = settings.ingest_concurrency
        self._board = board
        self._idle: asyncio.Queue[_Worker] | None = None
        self._workers: set[_Worker] = set()
        self._closed = False

    async def start(self) -> None:
        """Start the workers; they get ready while the service starts (jobs wait for that)."""
        self._idle = asyncio.Queue()
        for _ in range(self._count):
            self._idle.put_nowait(await self._spawn())

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(db, settings, *args)`` in an idle worker; its errors are raised here again."""
        if self._closed or self._idle is None:
            raise IngestWorkerLost("ingest workers are not running (the service is starting or stopping)")
        frame = encode(Job(work, args))
        worker = await self._idle.get()
        # Shielded: if this request is cancelled, the exchange still ends, so the worker's
        # reply is read and the worker goes back to the pool in step with its pipe.
        reply = await asyncio.shield(self._exchange(worker, frame))
        for answer in reply.answers:
            self._board.offer(answer)
        apply_counts(reply.counts)
        if reply.failure is not None:
            reply.failure.raise_again()
        return reply.result

    async def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """End of input for every worker (each finishes its job and exits), then wait; kill stragglers."""
        self._closed = True
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        waits = [self._wait_or_kill(worker, timeout) for worker in self._workers]
        await asyncio.gather(*waits)
        self._workers.clear()

    async def _exchange(self, worker: _Worker, frame: bytes) -> Reply:
        """One job on ``worker`` (replaced first if it was lost); the worker in use goes back to the pool."""
        assert self._idle is not None
        try:
            if not worker.lost and worker.process.returncode is not None:
                worker.lost = True
                log.error("ingest worker %d exited while idle (exit code %s); starting another",
                          worker.pid, worker.process.returncode)
            if worker.lost:
                worker = await self._replace(worker)
            worker.busy = True
            return await worker.exchange(frame)
        except Exception as exc:  # whatever broke the exchange, this worker is done
            if not worker.lost:
                worker.lost = True
                await self._report_lost(worker, exc)
            raise IngestWorkerLost("the ingest worker process was lost; retry the request") from exc
        finally:
            worker.busy = False
            self._idle.put_nowait(worker)

    async def _spawn(self) -> _Worker:
        env = {key: value for key, value in os.environ.items() if key != MULTIPROC_ENV}  # it counts nothing itself
        env[SERVER_PID_ENV] = str(os.getpid())  # it dies with this process (monitor.lifeline)
        process = await ChildProcess.start([sys.executable, "-m", WORKER_MODULE], env)
        assert process.stdin is not None
        process.stdin.write(self._settings_frame)
        worker = _Worker(process)
        worker.watcher = asyncio.create_task(self._watch(worker))
        self._workers.add(worker)
        log.debug("ingest worker %d started", worker.pid)
        return worker

    async def _watch(self, worker: _Worker) -> None:
        """Notice an exit when it happens: one while idle is known (and logged) before the next job."""
        code = await worker.process.wait()
        if not worker.busy and not worker.lost and not self._closed:
            worker.lost = True
            log.error("ingest worker %d exited while idle (exit code %s); the next job starts another",
                      worker.pid, code)

    async def _replace(self, lost: _Worker) -> _Worker:
        """A new worker in place of ``lost``; if starting one fails, ``lost`` stays (and is tried again)."""
        fresh = await self._spawn()
        self._workers.discard(lost)
        return fresh

    async def _report_lost(self, worker: _Worker, exc: BaseException) -> None:
        code = await self._wait_or_kill(worker, 2.0)
        when = "while working" if worker.ready else "before it was ready"
        log.error("ingest worker %d stopped %s (exit code %s: %s); the next job starts another",
                  worker.pid, when, code, str(exc) or type(exc).__name__)

    @staticmethod
    async def _wait_or_kill(worker: _Worker, timeout: float) -> int | None:
        """The worker's exit code, killing it if it has not exited within ``timeout``."""
        try:
            return await asyncio.wait_for(worker.process.wait(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            return await worker.process.wait()
