"""Tie a child process's life to its parent's: when the parent dies, however it dies, the child ends.

Why: SIGKILL of ``serve --workers N`` killed only the supervisor; its uvicorn workers
kept serving on the shared socket (and a restart failed with "address already in use"),
and an orphaned ingest worker could outlive everything. Linux's ``PR_SET_PDEATHSIG``
makes the kernel signal the child the moment its parent exits; a ``getppid()`` check
covers a parent that died before the call (the child is then already re-parented),
and a watchdog thread polling ``getppid()`` stands in where ``prctl`` is unavailable
(other systems, a refused call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL_S = 0.5
# The supervisor's pid, set by ``serve --workers N`` for its uvicorn workers.
SUPERVISOR_PID_ENV = "MONITOR_SUPERVISOR_PID"
# The spawning server process's pid, set for each ingest worker.
SERVER_PID_ENV = "MONITOR_SERVER_PID"


def _set_pdeathsig(sig: int) -> bool:
    """Ask the kernel for ``sig`` when the parent exits (Linux only); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0:
            return True
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    except OSError as exc:
        log.warning("prctl unavailable: %s", exc)
    return False


def _watch_parent(parent_pid: int, sig: int) -> None:
    """Signal ourselves once ``parent_pid`` is no longer our parent (it died; we were re-parented)."""
    while True:
        time.sleep(WATCHDOG_INTERVAL_S)
        if os.getppid() != parent_pid:
            log.error("parent process %d is gone: exiting", parent_pid)
            os.kill(os.getpid(), sig)
            return


def die_with_parent(parent_pid: int, sig: int) -> None:
    """End this process with ``sig`` when ``parent_pid`` (our parent at start) exits.

    The watchdog runs only where ``prctl`` could not be set: next to it, it would signal a
    second time, and a second SIGTERM makes uvicorn skip its graceful shutdown.
    """
    watched_by_kernel = _set_pdeathsig(sig)
    if os.getppid() != parent_pid:  # it died before prctl could watch it
        log.error("parent process %d exited before this process started: exiting", parent_pid)
        os.kill(os.getpid(), sig)
        return
    if not watched_by_kernel:
        threading.Thread(target=_watch_parent, args=(parent_pid, sig), name="parent-watchdog", daemon=True).start()


def parent_from_env(name: str) -> int | None:
    """The parent pid recorded in environment variable ``name``, if this process is not that parent."""
    value = os.environ.get(name, "")
    if not value.isdigit() or int(value) == os.getpid():
        return None
    return int(value)
