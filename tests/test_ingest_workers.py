"""Ingestion in worker processes (the default ``MONITOR_INGEST_MODE=process``), on the real service.

What must hold: the work happens in a child of the server process; a trainer's next poll
sees its own write; a worker that dies is replaced and costs at most the request it was
doing (a 503 whose retry is safe), never half a batch; workers end with their server,
however it ends; and every answer, error answers included, is the same as in thread mode.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from monitor.ingest.hold import HOLD_DIR_ENV
from tests.support.processes import ingest_workers_of, is_gone
from tests.support.reliability import wait_until
from tests.support.service import LiveService
from tests.test_api_ingest import make_records, put_run


def only_worker(service: LiveService, timeout: float = 10.0) -> int:
    """The pid of the server's single ingest worker (waiting while a replacement starts)."""
    assert service.process is not None
    pid = service.process.pid
    wait_until(lambda: len(ingest_workers_of(pid)) == 1, timeout, 0.05, what=f"one ingest worker of {pid}")
    return ingest_workers_of(pid)[0]


def post(service: LiveService, run_id: str, records: list[dict]) -> httpx.Response:
    return service.client.post(f"/api/v1/runs/{run_id}/diagnostics", json={"records": records})


def stored(service: LiveService, run_id: str) -> int:
    return service.json("GET", f"/api/v1/runs/{run_id}")["record_count"]


def test_ingestion_runs_in_a_worker_and_the_next_poll_sees_it(service: LiveService) -> None:
    put_run(service, "rw")
    worker = only_worker(service)
    assert worker != service.process.pid
    for first in range(0, 1000, 100):
        collapsing = [{**record, "attention_max": 0.05} for record in make_records(first, 100)]
        assert post(service, "rw", collapsing).json()["accepted"] == 100
        answer = service.json("GET", "/escalation/decision", params={"run_id": "rw"})
        assert answer["step"] == first + 99, "the poll after a POST must see that POST"
    assert answer["decision"] == "pause"
    assert stored(service, "rw") == 1000
    assert only_worker(service) == worker, "one long-lived worker does every job"


def test_a_worker_killed_while_idle_is_replaced_without_losing_a_request(service: LiveService) -> None:
    put_run(service, "idle-kill")
    assert post(service, "idle-kill", make_records(0, 50)).status_code == 200
    first_worker = only_worker(service)
    os.kill(first_worker, signal.SIGKILL)
    # The server watches its workers' exits (a pidfd on its event loop): once it has logged
    # this one, the next job starts a new worker, however soon it comes.
    wait_until(lambda: "exited while idle" in service.log_tail(20_000), 30, 0.05,
               what="the server noticing the killed worker's exit")
    response = post(service, "idle-kill", make_records(50, 50))
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 50
    assert only_worker(service) != first_worker
    assert stored(service, "idle-kill") == 100


def test_a_worker_killed_mid_batch_costs_a_503_and_never_half_a_batch(database_url: str, token: str,
                                                                      tmp_path: Path) -> None:
    holds = tmp_path / "holds"
    holds.mkdir()
    service = LiveService(database_url, token, tmp_path / "service.log", env={HOLD_DIR_ENV: str(holds)}).start()
    try:
        _kill_mid_batch(service, holds)
    finally:
        service.close()


def _kill_mid_batch(service: LiveService, holds: Path) -> None:
    """The kill lands at the worker's hold point: rows inserted, transaction not committed."""
    put_run(service, "busy-kill")
    assert post(service, "busy-kill", make_records(0, 10)).status_code == 200
    worker = only_worker(service)
    big = make_records(10, 3_000)
    (holds / "armed").touch()
    outcome: dict[str, httpx.Response] = {}
    sender = threading.Thread(target=lambda: outcome.update(response=post(service, "busy-kill", big)))
    sender.start()
    held = holds / f"held-{worker}"
    wait_until(held.exists, 60, 0.01, what="the worker holding mid-batch")
    os.kill(worker, signal.SIGKILL)
    sender.join(60)
    response = outcome["response"]
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert "retry" in response.json()["detail"]
    assert "stopped while working" in service.log_tail(20_000)
    assert stored(service, "busy-kill") == 10, "the batch's transaction died with its worker, all of it"
    retry = post(service, "busy-kill", big)  # not armed again: it runs through
    assert retry.status_code == 200, retry.text
    assert retry.json() == {"accepted": len(big), "duplicates": 0, "last_step": 10 + len(big) - 1, "late": 0,
                            "notes": []}
    assert stored(service, "busy-kill") == 10 + len(big)
    assert only_worker(service) != worker


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_workers_end_with_their_server(sqlite_url: str, token: str, tmp_path: Path, how: str) -> None:
    service = LiveService(sqlite_url, token, tmp_path / "service.log").start()
    try:
        put_run(service, "ends")
        assert post(service, "ends", make_records(0, 10)).status_code == 200
        worker = only_worker(service)
        # The whole process group, as a supervisor or Ctrl-C would; the worker has a session
        # of its own, so it ends because its server's pipe closed, not because of the signal.
        service.stop(getattr(signal, how))
        wait_until(lambda: is_gone(worker), 30, 0.05, what=f"ingest worker {worker} ending with its server ({how})")
    finally:
        service.close()
    if how == "SIGTERM":
        assert "Application shutdown complete" in service.log_tail(20_000)


def _error_answers(service: LiveService) -> dict[str, tuple[int, object]]:
    put_run(service, "errors")
    answers = {}
    cases = {
        "not json": dict(content=b"{not json", headers={"content-type": "application/json"}),
        "wrong type": dict(content=b"step=1", headers={"content-type": "text/plain"}),
        "bad record": dict(json={"records": [{"step": -1, "epoch": 0}]}),
        "too many": dict(json={"records": make_records(0, 11)}),
    }
    for name, request in cases.items():
        response = service.client.post("/api/v1/runs/errors/diagnostics", **request)
        answers[name] = (response.status_code, response.json())
    unknown = post(service, "no-such-run", make_records(0, 1))
    answers["unknown run"] = (unknown.status_code, unknown.json())
    epoch = service.client.post("/api/v1/runs/no-such-run/epochs", json={"epoch": 0})
    answers["unknown run epoch"] = (epoch.status_code, epoch.json())
    answers["stored"] = (200, stored(service, "errors"))
    return answers


def test_error_answers_are_the_same_in_process_and_thread_mode(sqlite_url: str, token: str, tmp_path: Path) -> None:
    by_mode = {}
    for mode in ("process", "thread"):
        url = sqlite_url.replace("monitor.db", f"monitor-{mode}.db")
        env = {"MONITOR_INGEST_MODE": mode, "MONITOR_MAX_RECORDS_PER_REQUEST": "10"}
        service = LiveService(url, token, tmp_path / f"service-{mode}.log", env=env).start()
        try:
            by_mode[mode] = _error_answers(service)
            assert len(ingest_workers_of(service.process.pid)) == (1 if mode == "process" else 0)
        finally:
            service.close()
    answers = by_mode["process"]
    assert answers == by_mode["thread"], json.dumps(by_mode, indent=1)
    assert [answers[name][0] for name in ("not json", "wrong type", "bad record", "too many")] == [422, 422, 422, 413]
    assert answers["unknown run"][0] == answers["unknown run epoch"][0] == 404
    assert answers["stored"] == (200, 0), "a refused request stores nothing"
