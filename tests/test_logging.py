"""Operations behaviour of the real process: JSON log lines, and SIGTERM during a request."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from monitor.store.database import Database
from monitor.store.models import Diagnostic
from tests.support.processes import tcp_queues
from tests.support.reliability import wait_until
from tests.support.service import LiveService

READINGS = {"attention_max": 0.7, "attention_entropy": 3.0, "loss": 0.3, "accuracy": 0.9, "grad_norm": 1.2}


def test_json_logs_one_object_per_line(sqlite_url: str, token: str, tmp_path: Path) -> None:
    log_path = tmp_path / "service.log"
    service = LiveService(sqlite_url, token, log_path, env={"MONITOR_LOG_JSON": "true"}).start()
    try:
        service.json("PUT", "/api/v1/runs/logs", json={})
        records = [{"step": step, "epoch": 0, **READINGS} for step in range(5)]
        service.json("POST", "/api/v1/runs/logs/diagnostics", json={"records": records})
        assert service.client.get("/api/v1/runs/missing").status_code == 404
    finally:
        service.close()
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line, startup and shutdown included
    assert all(isinstance(entry, dict) and {"ts", "level", "logger", "message"} <= entry.keys() for entry in parsed)
    access = [entry for entry in parsed if entry["logger"] == "monitor.access"]
    ingest = next(entry for entry in access if entry["method"] == "POST")
    assert ingest["route"] == "/api/v1/runs/{run_id}/diagnostics" and ingest["status"] == 200
    assert ingest["path"] == "/api/v1/runs/logs/diagnostics" and ingest["duration_ms"] >= 0
    assert any(entry["status"] == 404 and entry["route"] == "/api/v1/runs/{run_id}" for entry in access)
    assert not any("/healthz" == entry.get("route") for entry in access), "probes stay at DEBUG"
    assert any(entry["logger"].startswith("uvicorn") for entry in parsed)
    assert token not in log_path.read_text()


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    return request.param


def _all_read(port: int) -> bool:
    queues = tcp_queues(port)
    return bool(queues) and all(queue == (0, 0) for queue in queues)


def test_sigterm_lets_the_request_in_flight_finish(sqlite_url: str, token: str, tmp_path: Path,
                                                  workers: int) -> None:
    service = LiveService(sqlite_url, token, tmp_path / "service.log", workers=workers).start()
    try:
        service.json("PUT", "/api/v1/runs/big", json={})
        records = [{"step": step, "epoch": step // 1000, **READINGS} for step in range(20_000)]
        body = json.dumps({"records": records}).encode()
        half_sent, go_on = threading.Event(), threading.Event()

        def slow_body() -> Iterator[bytes]:
            yield body[: len(body) // 2]
            half_sent.set()
            go_on.wait(30)
            yield body[len(body) // 2:]

        outcome: dict[str, httpx.Response] = {}
        sender = threading.Thread(target=lambda: outcome.update(response=service.client.post(
            "/api/v1/runs/big/diagnostics", content=slow_body(), headers={"content-type": "application/json"})))
        sender.start()
        assert half_sent.wait(30)
        # Every byte sent so far was read by the server (no queue left at either end of any
        # connection to it): the request is inside the application, waiting for the rest.
        wait_until(lambda: _all_read(service.port), 30, 0.01, what="the server reading the first half")
        os.kill(service.process.pid, signal.SIGTERM)
        # Shutdown has begun in every server process: no new connections, in-flight ones continue.
        wait_until(lambda: service.log_tail(20_000).count("Shutting down") >= workers, 30, 0.01,
                   what="shutdown beginning")
        go_on.set()
        sender.join(60)
        response = outcome["response"]
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == len(records)
        # uvicorn re-raises the signal once it shut down cleanly, so the exit status says SIGTERM
        assert service.process.wait(60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in service.log_tail(20_000)
    finally:
        go_on.set()
        service.close()
    db = Database(sqlite_url)
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Diagnostic)) == len(records)
    db.dispose()
