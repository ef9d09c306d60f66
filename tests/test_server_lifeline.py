"""A server's child processes die with it and never hold its listening socket (issue 16.4).

SIGKILL reaches only the process it is sent to. Before 16.4, SIGKILL of the supervisor of
``serve --workers N`` left its uvicorn workers serving on the shared socket, so a restart
on the same port failed with "address already in use"; and every ingest worker
inherited the listening socket (uvloop's spawn ignores ``close_fds``), so even an
orphaned ingest worker kept the port bound. Every wait here is on an event (a process
gone, a port bound), with a generous deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import descendants_of, ingest_workers_of, is_gone, listening_inodes, socket_inodes
from tests.support.reliability import wait_until
from tests.support.service import REPO_ROOT, LiveService
from tests.test_api_ingest import make_records, put_run

GENEROUS_S = 60


def _ingest_workers(service: LiveService, expected: int) -> list[int]:
    """Every ingest worker under ``service`` (its own, or its uvicorn workers'), once ``expected`` run."""
    assert service.process is not None
    root = service.process.pid

    def found() -> list[int]:
        return [pid for parent in [root, *descendants_of(root)] for pid in ingest_workers_of(parent)]

    wait_until(lambda: len(found()) == expected, GENEROUS_S, 0.05, what=f"{expected} ingest workers")
    return found()


def _kill_leftovers(pids: list[int]) -> None:
    """Clean up after a failure: the processes this test started and that outlived their parent."""
    for pid in pids:
        if not is_gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_sigkill_of_the_supervisor_ends_every_worker_and_frees_the_port(sqlite_url: str, token: str,
                                                                        tmp_path: Path) -> None:
    first = LiveService(sqlite_url, token, tmp_path / "first.log", workers=2).start()
    assert first.process is not None
    _ingest_workers(first, expected=2)
    children = descendants_of(first.process.pid)
    try:
        os.kill(first.process.pid, signal.SIGKILL)  # the supervisor alone, as an OOM killer would
        first.process.wait(GENEROUS_S)
        wait_until(lambda: all(is_gone(pid) for pid in children), GENEROUS_S, 0.05,
                   what=f"every process under the killed supervisor ending: {children}")
        second = LiveService(sqlite_url, token, tmp_path / "second.log", port=first.port, workers=2).start()
        try:
            put_run(second, "after-restart")
            response = second.client.post("/api/v1/runs/after-restart/diagnostics",
                                          json={"records": make_records(0, 10)})
            assert response.status_code == 200, response.text
        finally:
            second.close()
    finally:
        _kill_leftovers(children)
        first.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_ingest_workers_hold_no_listening_socket(sqlite_url: str, token: str, tmp_path: Path, workers: int) -> None:
    service = LiveService(sqlite_url, token, tmp_path / "service.log", workers=workers).start()
    try:
        assert service.process is not None
        servers = [service.process.pid, *descendants_of(service.process.pid)]
        held_by_server = set().union(*(socket_inodes(pid) for pid in servers)) & listening_inodes()
        assert held_by_server, "the server's listening socket must show up in /proc (or this test checks nothing)"
        for pid in _ingest_workers(service, expected=workers):
            leaked = socket_inodes(pid) & listening_inodes()
            assert not leaked, f"ingest worker {pid} holds listening socket(s) {leaked}"
    finally:
        service.close()


GRANDCHILD = """
import sys, time
from monitor import lifeline
if sys.argv[2] == "watchdog":
    lifeline._set_pdeathsig = lambda sig: False  # as where prctl is unavailable
lifeline.die_with_parent(int(sys.argv[1]), 9)
print("tied", flush=True)
time.sleep(600)
"""
PARENT = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]], stdout=subprocess.PIPE)
print(child.pid, child.stdout.readline().decode().strip(), flush=True)
child.wait()
"""


@pytest.mark.parametrize("how", ["prctl", "watchdog"])
def test_a_tied_process_dies_with_its_parent(how: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, GRANDCHILD, how], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid_text, state = parent.stdout.readline().split()
    child = int(pid_text)
    try:
        assert state == "tied"
        parent.kill()
        parent.wait(GENEROUS_S)
        wait_until(lambda: is_gone(child), GENEROUS_S, 0.05, what=f"process {child} ending with its parent ({how})")
    finally:
        _kill_leftovers([child])
