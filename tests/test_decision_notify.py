"""PostgreSQL: each server process keeps the runs' answers, kept current by NOTIFY.

Two real service processes share one database. Once a process has read a run's answer it
serves its own copy (a change made behind the service's back, straight in SQL, is not
seen: that is how the test knows the copy is used); an ingest through the other process
reaches it by notification; an ingest through itself is served at once. When the
listening connection is killed, the process falls back to reading the database, then
listens again and keeps up as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from monitor.store.decision_listener import APPLICATION_NAME
from tests.support.reliability import wait_until
from tests.support.service import LiveService
from tests.test_multiworker import COLLAPSED, HEALTHY

pytestmark = pytest.mark.postgres

RUN = "notified"
DECISION = "/escalation/decision"
BEHIND = '{"behind":1}'  # written straight into the row, with no NOTIFY


@pytest.fixture
def pair(postgres_url: str, token: str, tmp_path: Path) -> Iterator[tuple[LiveService, LiveService]]:
    services = [LiveService(postgres_url, token, tmp_path / f"service-{n}.log").start() for n in range(2)]
    try:
        yield services[0], services[1]
    finally:
        for service in services:
            service.close()


def _sql(url: str, statement: str, **params: object) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def _ingest(service: LiveService, first_step: int, readings: dict[str, float], count: int = 10) -> None:
    records = [{"step": step, "epoch": step // 100, **readings} for step in range(first_step, first_step + count)]
    service.json("POST", f"/api/v1/runs/{RUN}/diagnostics", json={"records": records})


def _decision_text(service: LiveService) -> str:
    response = service.client.get(DECISION, params={"run_id": RUN})
    response.raise_for_status()
    return response.text


def _listeners(url: str) -> int:
    rows = _sql(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                     "AND datname = current_database()", name=APPLICATION_NAME)
    return int(rows[0][0])


def test_processes_share_answers_through_notifications(pair: tuple[LiveService, LiveService],
                                                       postgres_url: str) -> None:
    writer, reader = pair
    writer.json("PUT", f"/api/v1/runs/{RUN}", json={"config": {"monitor": {"batch_for": 3}}})
    _ingest(writer, 0, HEALTHY)
    assert reader.json("GET", DECISION, params={"run_id": RUN})["decision"] == "continue"
    _sql(postgres_url, "UPDATE runs SET decision_body = :body WHERE run_id = :r", body=BEHIND, r=RUN)
    assert _decision_text(reader) != BEHIND  # served from the process's copy

    _ingest(writer, 10, COLLAPSED)
    assert writer.json("GET", DECISION, params={"run_id": RUN})["decision"] == "pause"  # its own write: at once
    wait_until(lambda: '"pause"' in _decision_text(reader), timeout=30)
    assert _decision_text(reader) == _decision_text(writer)


def test_a_killed_listener_falls_back_to_reads_and_listens_again(pair: tuple[LiveService, LiveService],
                                                                 postgres_url: str) -> None:
    writer, reader = pair
    writer.json("PUT", f"/api/v1/runs/{RUN}", json={"config": {"monitor": {"batch_for": 3}}})
    _ingest(writer, 0, COLLAPSED)
    wait_until(lambda: '"pause"' in _decision_text(reader), timeout=30)
    wait_until(lambda: _listeners(postgres_url) == 2, timeout=30)

    _sql(postgres_url, "UPDATE runs SET decision_body = :body WHERE run_id = :r", body=BEHIND, r=RUN)
    _sql(postgres_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name "
                       "AND datname = current_database()", name=APPLICATION_NAME)
    # Both copies are dropped with their connections: the database's row is served again.
    wait_until(lambda: _decision_text(reader) == BEHIND, timeout=30)
    assert _decision_text(writer) == BEHIND

    wait_until(lambda: _listeners(postgres_url) == 2, timeout=30)  # listening again
    _ingest(writer, 10, HEALTHY, count=250)  # healthy into the next epochs: the rule resolves
    wait_until(lambda: '"continue"' in _decision_text(reader), timeout=30,
               what=f"continue at the reader (writer: {_decision_text(writer)})")
    assert _decision_text(reader) == _decision_text(writer)
    assert "decision notifications interrupted" in reader.log_tail()


def test_without_notifications_every_poll_reads_the_database(postgres_url: str, token: str,
                                                             tmp_path: Path) -> None:
    env = {"MONITOR_DECISION_NOTIFICATIONS": "false"}
    service = LiveService(postgres_url, token, tmp_path / "service.log", env=env).start()
    try:
        service.json("PUT", f"/api/v1/runs/{RUN}", json={"config": {}})
        assert service.json("GET", DECISION, params={"run_id": RUN})["decision"] == "continue"
        _sql(postgres_url, "UPDATE runs SET decision_body = :body WHERE run_id = :r", body=BEHIND, r=RUN)
        assert _decision_text(service) == BEHIND
        assert _listeners(postgres_url) == 0
    finally:
        service.close()
