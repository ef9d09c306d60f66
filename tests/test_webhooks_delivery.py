"""End to end on the real service (SQLite and PostgreSQL) with a real receiver on loopback:
signed payloads, retries, the retry limit, restarts, and slow receivers.

Nothing here races the clock (issue 16.1): a slow receiver is one the test holds open and
lets go only after asserting, and "nothing more was sent" is checked at a point after which
nothing more can be sent -- the service has stopped, or a later event to the same webhook
has been delivered (the worker sends a webhook's oldest due row first, one at a time).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.receiver import Receiver, drive_collapse, subscribe
from tests.support.service import LiveService

FAST = {
    "MONITOR_WEBHOOK_POLL_SECONDS": "0.1",
    "MONITOR_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
    "MONITOR_WEBHOOK_BACKOFF_MAX_SECONDS": "1",
    "MONITOR_WEBHOOK_MAX_ATTEMPTS": "4",
    "MONITOR_WEBHOOK_TIMEOUT_SECONDS": "2",
    "MONITOR_WEBHOOK_ATTEMPT_DEADLINE_SECONDS": "3",
    "MONITOR_WEBHOOK_LEASE_SECONDS": "5",
}
PAUSE_ONLY = {"events": ["decision.pause"]}  # one event per collapsed run


@pytest.fixture
def start_service(database_url: str, token: str, tmp_path: Path) -> Iterator[Callable[..., LiveService]]:
    """Start the service on this test's database with fast webhook settings (plus overrides)."""
    started: list[LiveService] = []

    def start(**overrides: str) -> LiveService:
        live = LiveService(database_url, token, tmp_path / f"service{len(started)}.log", env={**FAST, **overrides})
        started.append(live)
        return live.start()

    yield start
    for live in started:
        live.close()


def wait_deliveries(service: LiveService, predicate: Callable[[list[dict[str, Any]]], bool],
                    timeout: float = 20, **params: Any) -> list[dict[str, Any]]:
    """Poll GET /api/v1/deliveries until ``predicate`` holds on the rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = service.json("GET", "/api/v1/deliveries", params=params)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries never matched: {rows}")
        time.sleep(0.1)


def event_ids(service: LiveService, **params: Any) -> set[str]:
    """Event ids of the delivery rows (the ``webhook-id`` each was sent with)."""
    return {row["event_id"] for row in service.json("GET", "/api/v1/deliveries", params={"limit": 1000, **params})}


def sent_per_event(receiver: Receiver) -> dict[str, int]:
    """How many requests (any answer) arrived for each webhook-id."""
    counts: dict[str, int] = {}
    for item in receiver.snapshot():
        counts[item.webhook_id] = counts.get(item.webhook_id, 0) + 1
    return counts


def test_alert_arrives_signed_in_both_formats(start_service: Callable[..., LiveService], receiver: Receiver) -> None:
    service = start_service()
    standard = subscribe(service, receiver.url + "/standard/T0SECRETPATH")
    slack = subscribe(service, receiver.url + "/slack", format="slack", **PAUSE_ONLY)
    service.client.put("/api/v1/runs/another-run", json={"config": {}}).raise_for_status()
    other = subscribe(service, receiver.url + "/other-run", run_id="another-run")
    drive_collapse(service, "collapse-1")
    # The outbox rows are written in the ingest transaction: none for the other run's hook means
    # nothing can ever be sent to it, and once the 4 rows are delivered the receiver has them all.
    assert service.json("GET", f"/api/v1/webhooks/{other['id']}/deliveries") == []
    rows = wait_deliveries(service, lambda rows: len(rows) == 4 and {r["status"] for r in rows} == {"delivered"})
    got = receiver.wait_delivered(4)  # 2 rule.fired + decision.pause, and the slack pause
    assert sorted(item.webhook_id for item in receiver.snapshot()) == sorted(r["event_id"] for r in rows)
    assert not [item for item in receiver.snapshot() if item.path.endswith("other-run")]
    standard_items = [item for item in got if "/standard/" in item.path]
    payloads = [Webhook(standard["secret"]).verify(item.body, item.headers) for item in standard_items]
    assert sorted(p["type"] for p in payloads) == ["decision.pause", "rule.fired", "rule.fired"]
    collapse = next(p for p in payloads if p["type"] == "rule.fired" and p["data"]["rule"] == "attention_collapse")
    assert collapse["timestamp"].endswith("Z")
    data = collapse["data"]
    assert (data["run_id"], data["metric"]) == ("collapse-1", "attention_max")
    assert (data["value"], data["threshold"]) == (0.001, 0.1)
    assert data["decision"] == "pause" and data["dashboard_url"] == f"{service.base_url}/runs/collapse-1"
    assert len({item.webhook_id for item in standard_items}) == 3
    [slack_item] = [item for item in got if item.path.endswith("/slack")]
    text = Webhook(slack["secret"]).verify(slack_item.body, slack_item.headers)["text"]
    assert "collapse-1" in text and "pause" in text and f"<{service.base_url}/runs/collapse-1|" in text
    log = service.log_tail(10**7)
    for secret in (standard["secret"], slack["secret"]):
        assert secret.removeprefix("whsec_") not in log
    assert "T0SECRETPATH" not in log and "delivered" in log


def test_errors_are_retried_with_the_same_webhook_id(start_service: Callable[..., LiveService],
                                                     receiver: Receiver) -> None:
    service = start_service()
    hook = subscribe(service, receiver.url, **PAUSE_ONLY)
    receiver.fail_next(2, status=503)
    drive_collapse(service, "flaky")
    receiver.wait_delivered(1)
    items = receiver.snapshot()
    assert [item.status for item in items] == [503, 503, 200]
    assert len({item.webhook_id for item in items}) == 1
    for item in items:  # every attempt is signed afresh
        Webhook(hook["secret"]).verify(item.body, item.headers)
    [row] = wait_deliveries(service, lambda rows: rows and rows[0]["status"] == "delivered")
    assert row["attempts"] == 3 and row["last_error"] is None and row["event_id"] == items[0].webhook_id


def test_retry_limit_fails_visibly_and_can_be_retried(start_service: Callable[..., LiveService],
                                                       receiver: Receiver) -> None:
    service = start_service()
    hook = subscribe(service, receiver.url, **PAUSE_ONLY)
    receiver.fail_body = b"RECEIVER-INTERNALS " * 20  # a receiver's error body is its own business
    receiver.fail_next(1000)
    drive_collapse(service, "doomed")
    [row] = wait_deliveries(service, lambda rows: len(rows) == 1, status="failed")
    assert row["attempts"] == 4 and row["last_error"] == "HTTP 500"
    assert "RECEIVER-INTERNALS" not in service.client.get("/api/v1/deliveries").text
    assert service.json("GET", f"/api/v1/webhooks/{hook['id']}/deliveries", params={"status": "failed"}) == [row]
    receiver.fail_next(0)
    drive_collapse(service, "doomed-later")  # a later event to the same hook: sent after any due older row
    [later] = event_ids(service) - {row["event_id"]}
    receiver.wait_for(lambda items: any(item.webhook_id == later and item.ok for item in items))
    assert sent_per_event(receiver) == {row["event_id"]: 4, later: 1}  # no attempt after giving up
    assert service.client.post(f"/api/v1/deliveries/{row['id']}/retry").status_code == 200
    assert service.client.post(f"/api/v1/deliveries/{row['id']}/retry").status_code in (200, 409)
    wait_deliveries(service, lambda rows: {r["status"] for r in rows} == {"delivered"})
    service.stop()  # stopped: whatever was sent has arrived, and nothing more can be
    assert receiver.delivered_ids() == {row["event_id"]: 1, later: 1}


def test_pending_delivery_survives_sigkill_exactly_once(start_service: Callable[..., LiveService],
                                                         receiver: Receiver) -> None:
    service = start_service(MONITOR_WEBHOOK_MAX_ATTEMPTS="100")
    receiver.stop()  # down: connection refused
    subscribe(service, receiver.url)
    drive_collapse(service, "crashy")
    rows = wait_deliveries(service, lambda rows: len(rows) == 3 and all(r["attempts"] >= 1 for r in rows))
    assert {r["status"] for r in rows} <= {"pending", "delivering"}
    assert any(r["last_error"] == "connection refused" for r in rows)
    service.kill()
    receiver.start()
    service.start()
    receiver.wait_delivered(3)
    wait_deliveries(service, lambda rows: len(rows) == 3 and {r["status"] for r in rows} == {"delivered"})
    service.stop()  # stopped: nothing more can arrive from this life of the service
    ids = receiver.delivered_ids()
    assert sorted(ids) == sorted(r["event_id"] for r in rows) and set(ids.values()) == {1}
    service.start()  # a clean restart sends nothing again: a later run's events arrive, and
    drive_collapse(service, "crashy-later")  # an older row sent again would have been sent first
    later = event_ids(service) - set(ids)
    assert len(later) == 3
    receiver.wait_for(lambda items: later <= {item.webhook_id for item in items if item.ok})
    assert receiver.delivered_ids() == {**ids, **{event: 1 for event in later}}
    # the receiver has the last answer before the service has recorded it: wait for the rows
    wait_deliveries(service, lambda rows: len(rows) == 6 and {r["status"] for r in rows} == {"delivered"})


def test_send_cut_by_sigkill_is_resent_after_its_lease(start_service: Callable[..., LiveService],
                                                        receiver: Receiver) -> None:
    service = start_service()
    subscribe(service, receiver.url, **PAUSE_ONLY)
    receiver.hold()
    drive_collapse(service, "cut")
    receiver.wait_for(lambda items: len(items) == 1)
    service.kill()  # mid-send (held open): the row stays "delivering" until its lease ends
    receiver.let_go()
    service.start()
    items = receiver.wait_for(lambda items: len(items) >= 2, timeout=30)
    assert len({item.webhook_id for item in items}) == 1  # the same message: receivers dedupe on it
    [row] = wait_deliveries(service, lambda rows: rows and rows[0]["status"] == "delivered")
    assert row["attempts"] == 2


# Timeouts no test outlives: only the test's let_go() ends a held send.
HELD = {"MONITOR_WEBHOOK_TIMEOUT_SECONDS": "600", "MONITOR_WEBHOOK_ATTEMPT_DEADLINE_SECONDS": "500",
        "MONITOR_WEBHOOK_LEASE_SECONDS": "600"}


def test_slow_receiver_delays_nobody_else(start_service: Callable[..., LiveService]) -> None:
    service = start_service(**HELD)
    slow, fast = Receiver().start(), Receiver().start()
    try:
        slow.hold()  # the slow receiver answers nothing until the test has checked everything else
        subscribe(service, slow.url)
        subscribe(service, fast.url)
        drive_collapse(service, "slow-1")
        slow.wait_for(lambda items: len(items) == 1)
        drive_collapse(service, "slow-2")  # answered while the slow send is held open: ingestion never waits
        assert len(slow.snapshot()) == 1 and slow.held_connected() == 1, "ingestion waited for a slow receiver"
        fast.wait_delivered(6, timeout=60)  # both runs' alerts, while the slow one still hangs
        assert len(slow.snapshot()) == 1 and slow.held_connected() == 1  # still the first send, still open
        slow.let_go()
        slow.wait_delivered(6, timeout=60)
        assert set(slow.delivered_ids().values()) == {1}
    finally:
        slow.stop()
        fast.stop()


def test_stop_is_prompt_while_a_send_hangs(start_service: Callable[..., LiveService], receiver: Receiver) -> None:
    service = start_service(**HELD)
    subscribe(service, receiver.url, **PAUSE_ONLY)
    receiver.hold()  # never let go before the service is gone: the send cannot end by itself
    drive_collapse(service, "hang")
    receiver.wait_for(lambda items: len(items) == 1)
    # SIGTERM, escalated to SIGKILL if the service has not exited after 120 s (well short of the
    # 500 s attempt deadline): a stop that waits for the held send ends by SIGKILL.
    service.stop(timeout=120)
    assert service.process is not None and service.process.returncode not in (None, -signal.SIGKILL)
    assert "still in flight at shutdown: cancelled" in service.log_tail(10**6)
    assert receiver.open_count() == 1 and receiver.held_connected() == 0  # still held; the sender hung up
