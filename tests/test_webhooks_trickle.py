"""Receivers that answer one byte at a time (issue 16.2), on SQLite and PostgreSQL.

The receiver trickles until the test releases it, so nothing here races the clock: each
test waits for an outcome that can only happen while the trickle is still going (the
sender hung up, a row was recorded, another receiver got its alert) and never asserts how
fast anything was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.receiver import Receiver, drive_collapse, subscribe
from tests.support.service import LiveService
from tests.test_webhooks_delivery import PAUSE_ONLY, start_service, wait_deliveries  # noqa: F401 (fixture)

# A per-read timeout (2 s) that a byte every 0.2 s never trips; only the 1 s deadline can end a send.
TRICKLE = {"MONITOR_WEBHOOK_ATTEMPT_DEADLINE_SECONDS": "1", "MONITOR_WEBHOOK_MAX_ATTEMPTS": "100"}


@pytest.fixture
def trickling() -> Iterator[Receiver]:
    with Receiver() as live:
        live.trickle = "headers"
        try:
            yield live
        finally:
            live.release.set()


def test_attempt_deadline_ends_a_send_that_trickles(start_service: Callable[..., LiveService],
                                                     trickling: Receiver) -> None:
    service = start_service(**TRICKLE)
    subscribe(service, trickling.url, **PAUSE_ONLY)
    drive_collapse(service, "trickle")
    rows = wait_deliveries(service, lambda rows: rows and rows[0]["attempts"] >= 2
                           and rows[0]["last_error"] == "timeout after 1.0 s (attempt deadline)")
    trickling.wait_for(lambda items: any(item.abandoned for item in items))  # the sender hung up, we did not
    assert not trickling.release.is_set()
    trickling.release.set()
    [row] = wait_deliveries(service, lambda rows: rows and rows[0]["status"] == "delivered")
    assert row["event_id"] == rows[0]["event_id"] and row["last_error"] is None
    assert trickling.overlaps == 0  # never two sends of it at once
    assert len(trickling.delivered_ids()) == 1


def test_a_2xx_is_delivered_even_if_its_body_trickles(start_service: Callable[..., LiveService],
                                                       trickling: Receiver) -> None:
    trickling.trickle = "body"
    # A deadline no status line on loopback misses (attempts == 1 must not depend on speed);
    # a sender that waited for the endless body would still never record a delivery.
    service = start_service(MONITOR_WEBHOOK_ATTEMPT_DEADLINE_SECONDS="60", MONITOR_WEBHOOK_LEASE_SECONDS="90")
    subscribe(service, trickling.url, **PAUSE_ONLY)
    drive_collapse(service, "trickle-body")
    [row] = wait_deliveries(service, lambda rows: rows and rows[0]["status"] != "pending"
                            and rows[0]["status"] != "delivering", timeout=90)
    assert not trickling.release.is_set()  # still trickling: success was taken from the status line
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 1, None)
    assert len(trickling.snapshot()) == 1


def test_a_slow_receiver_cannot_take_every_slot(start_service: Callable[..., LiveService],
                                                trickling: Receiver, receiver: Receiver) -> None:
    # Two slots, three subscriptions on the slow receiver, and a deadline long enough that
    # only the per-receiver cap (not an aborted send) can free a slot for the fast one.
    service = start_service(MONITOR_WEBHOOK_CONCURRENCY="2", MONITOR_WEBHOOK_CONCURRENCY_PER_RECEIVER="1",
                            MONITOR_WEBHOOK_ATTEMPT_DEADLINE_SECONDS="120", MONITOR_WEBHOOK_LEASE_SECONDS="150")
    for n in range(3):
        subscribe(service, f"{trickling.url}/{n}", **PAUSE_ONLY)
    subscribe(service, receiver.url, **PAUSE_ONLY)
    drive_collapse(service, "starve")
    receiver.wait_delivered(1, timeout=60)
    trickling.wait_for(lambda items: len(items) >= 1)  # its one send may arrive after the fast one's
    # the slow receiver holds its one slot, still open (the 120 s deadline freed nothing), and no other
    assert not trickling.abandoned() and trickling.open_count() == 1 and len(trickling.snapshot()) == 1
    trickling.release.set()
    rows = wait_deliveries(service, lambda rows: len(rows) == 4 and {r["status"] for r in rows} == {"delivered"},
                           timeout=60)
    assert {r["attempts"] for r in rows} == {1} and trickling.overlaps == 0
