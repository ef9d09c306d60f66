"""Find a service's processes through /proc (Linux): its ingest workers, and whether one is gone."""

from __future__ import annotations

import os
from pathlib import Path

INGEST_WORKER_MODULE = b"monitor.ingest.child"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def ingest_workers_of(pid: int) -> list[int]:
    """The ingest worker processes (``monitor.ingest.child``) started by server process ``pid``."""
    return [child for child in children_of(pid) if INGEST_WORKER_MODULE in cmdline(child)]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used so far."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def is_gone(pid: int) -> bool:
    """Exited (a zombie nobody reaped yet counts as exited)."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] == "Z"
