"""Two server processes on one PostgreSQL, both delivering: no event is sent twice, and a
trickling receiver never gets one event from both at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.receiver import Receiver, drive_collapse, subscribe
from tests.support.service import LiveService
from tests.test_webhooks_delivery import FAST, wait_deliveries

HOOKS, RUNS, EVENTS_PER_RUN = 8, 12, 3  # 2 rule.fired + decision.pause per collapsed run


def _start_two(postgres_url: str, token: str, tmp_path: Path, env: dict[str, str]) -> list[LiveService]:
    services: list[LiveService] = []
    try:
        for n in range(2):  # one after the other: each applies migrations on start
            services.append(LiveService(postgres_url, token, tmp_path / f"service{n}.log", env=env).start())
    except BaseException:
        for live in services:
            live.close()
        raise
    return services


@pytest.fixture
def two_services(postgres_url: str, token: str, tmp_path: Path) -> Iterator[list[LiveService]]:
    services = _start_two(postgres_url, token, tmp_path, FAST)
    try:
        yield services
    finally:
        for live in services:
            live.close()


@pytest.mark.postgres
def test_each_event_is_delivered_once_by_two_processes(two_services: list[LiveService]) -> None:
    receiver = Receiver().start()
    try:
        first, second = two_services
        for n in range(HOOKS):
            subscribe(first, f"{receiver.url}/{n}")
        for n in range(RUNS):  # ingest through both processes
            drive_collapse(two_services[n % 2], f"run-{n}")
        expected = HOOKS * RUNS * EVENTS_PER_RUN
        receiver.wait_delivered(expected, timeout=60)
        rows = wait_deliveries(second, lambda rows: len(rows) == expected
                               and {row["status"] for row in rows} == {"delivered"}, timeout=60, limit=1000)
        for live in two_services:  # stopped: whatever either sent has arrived, and nothing more can
            live.stop()
        ids = receiver.delivered_ids()
        assert len(ids) == expected and set(ids.values()) == {1}
        assert len(receiver.snapshot()) == expected
        assert {row["attempts"] for row in rows} == {1}
        assert sorted(ids) == sorted(row["event_id"] for row in rows)
        senders = [len(re.findall(r": delivered \(HTTP", live.log_tail(10**8))) for live in two_services]
        assert sum(senders) == expected
        assert all(senders), f"both processes should have delivered some: {senders}"
    finally:
        receiver.stop()


@pytest.mark.postgres
def test_a_trickling_receiver_never_gets_one_event_from_two_processes_at_once(
        postgres_url: str, token: str, tmp_path: Path) -> None:
    # Lease 3 s, attempt deadline 1 s, per-read timeout 2 s: a byte every 0.2 s never trips the
    # per-read timeout, so before the fix a send outlived its lease and the other process sent again.
    env = {**FAST, "MONITOR_WEBHOOK_ATTEMPT_DEADLINE_SECONDS": "1", "MONITOR_WEBHOOK_LEASE_SECONDS": "3",
           "MONITOR_WEBHOOK_MAX_ATTEMPTS": "100"}
    receiver = Receiver().start()
    receiver.trickle = "headers"
    services = _start_two(postgres_url, token, tmp_path, env)
    try:
        first, second = services
        subscribe(first, receiver.url, events=["decision.pause"])
        drive_collapse(second, "trickled")
        # several attempts, all cut off (or, before the fix, a second send while the first was open)
        receiver.wait_for(lambda items: len(items) >= 4 or receiver.overlaps > 0, timeout=60)
        assert receiver.overlaps == 0, "one event was being sent twice at the same time"
        receiver.release.set()
        [row] = wait_deliveries(first, lambda rows: rows and rows[0]["status"] == "delivered", timeout=30)
        assert row["attempts"] == len(receiver.snapshot()) and receiver.overlaps == 0
        assert {item.webhook_id for item in receiver.snapshot()} == {row["event_id"]}
    finally:
        receiver.release.set()
        for live in services:
            live.close()
        receiver.stop()
