"""Memory of a process tree from /proc (stdlib only; used on both sides).

RSS summed over a multi-process server counts shared pages once per process, so trees are
also measured in PSS (each shared page split between its sharers), the fair sum.
"""

from __future__ import annotations

from pathlib import Path


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack += _children(current)
    return found


def _field_kib(path: str, name: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` plus all its descendants (uvicorn/gunicorn workers included)."""
    return sum(_field_kib(f"/proc/{p}/status", "VmRSS:") for p in _tree(pid)) * 1024


def tree_pss_bytes(pid: int) -> int:
    """Proportional set size of the tree (needs /proc/PID/smaps_rollup; 0 where unreadable)."""
    return sum(_field_kib(f"/proc/{p}/smaps_rollup", "Pss:") for p in _tree(pid)) * 1024
