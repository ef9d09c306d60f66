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


def descendants_of(pid: int) -> list[int]:
    """Live children of ``pid``, their children, and so on."""
    found, frontier = [], [pid]
    while frontier:
        children = [child for parent in frontier for child in children_of(parent)]
        found.extend(children)
        frontier = children
    return found


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets ``pid`` holds open (``socket:[N]`` links in /proc/<pid>/fd)."""
    inodes = set()
    try:
        entries = list(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def listening_inodes() -> set[int]:
    """The inodes of every listening TCP socket on this host (state 0A in /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":
                inodes.add(int(fields[9]))
    return inodes


def tcp_queues(port: int) -> list[tuple[int, int]]:
    """(send queue, receive queue) in bytes of each established IPv4 TCP connection with ``port``
    at either end, from /proc/net/tcp: both 0 on both ends means every byte sent was read."""
    queues = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port, remote_port = (int(address.split(":")[1], 16) for address in fields[1:3])
        if fields[3] == "01" and port in (local_port, remote_port):  # 01: ESTABLISHED
            tx, rx = (int(value, 16) for value in fields[4].split(":"))
            queues.append((tx, rx))
    return queues
