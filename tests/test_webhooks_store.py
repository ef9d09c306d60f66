"""Outbox claims against real SQLite and PostgreSQL: exclusive, leased, reclaimable."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from monitor.alerts.outbox import enqueue
from monitor.store import webhooks as store
from monitor.store.database import Database
from monitor.store.migrate import upgrade
from monitor.store.models import WebhookDelivery, utcnow

SECRET = "whsec_" + "A" * 32


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    upgrade(database_url)
    database = Database(database_url, 4)
    try:
        yield database
    finally:
        database.dispose()


def _seed(db: Database, hooks: int, events: int) -> list[int]:
    """``hooks`` subscriptions to every event, ``events`` rule.fired events each."""
    with db.write_session() as session:
        ids = [store.create_webhook(session, url=f"http://127.0.0.1:9/{n}", secret=SECRET,
                                    events=["rule.fired"], fmt="standard", run_id=None).id for n in range(hooks)]
        for n in range(events):
            assert enqueue(session, "run", "rule.fired", {"n": n}) == hooks
    return ids


def _claim(db: Database, now: datetime | None = None, lease: float = 60, limit: int = 10,
           busy: tuple[int, ...] = (), max_attempts: int = 5) -> list[store.ClaimedDelivery]:
    now = now or utcnow()
    with db.write_session() as session:
        return store.claim_due(session, now=now, lease_until=now + timedelta(seconds=lease), limit=limit,
                               busy_webhooks=busy, max_attempts=max_attempts)


def _row(db: Database, delivery_id: int) -> WebhookDelivery:
    with db.read_session() as session:
        row = session.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row


def test_one_row_per_webhook_oldest_first_and_busy_skipped(db: Database) -> None:
    hooks = _seed(db, hooks=3, events=2)
    claims = _claim(db, busy=(hooks[0],))
    assert sorted(c.webhook_id for c in claims) == hooks[1:]
    assert all(c.attempts == 1 and c.secret == SECRET and c.payload["data"]["n"] == 0 for c in claims)
    assert {_row(db, c.id).status for c in claims} == {"delivering"}
    assert [c.webhook_id for c in _claim(db)] == [hooks[0]]  # the others have a send in flight
    with db.read_session() as session:  # every webhook has a send in flight now
        assert not store.has_due(session, utcnow())


def test_claims_are_exclusive_across_concurrent_claimers(database_url: str, db: Database) -> None:
    _seed(db, hooks=12, events=6)
    claimers = [Database(database_url, 2) for _ in range(4)]
    seen: Counter[int] = Counter()
    lock, start = threading.Lock(), threading.Barrier(len(claimers))

    def drain(own: Database) -> None:
        start.wait()
        idle = 0
        while idle < 5:
            claims = _claim(own, limit=5)
            idle = 0 if claims else idle + 1
            with own.write_session() as session:
                for claim in claims:
                    assert store.mark_delivered(session, claim, utcnow())
            with lock:
                seen.update(claim.id for claim in claims)

    threads = [threading.Thread(target=drain, args=(own,)) for own in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for own in claimers:
        own.dispose()
    assert len(seen) == 72 and set(seen.values()) == {1}
    with db.read_session() as session:
        assert {row.status for row in store.list_deliveries(session, limit=1000)} == {"delivered"}


def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_record(db: Database) -> None:
    _seed(db, hooks=1, events=1)
    first = _claim(db, lease=-1)[0]  # a lease that is already over
    second = _claim(db)[0]
    assert second.id == first.id and second.attempts == 2
    assert _row(db, first.id).last_error == store.LEASE_EXPIRED
    with db.write_session() as session:
        assert not store.mark_delivered(session, first, utcnow())
        assert store.mark_attempt_failed(session, second, "HTTP 500", None)
    row = _row(db, first.id)
    assert (row.status, row.last_error, row.attempts) == ("failed", "HTTP 500", 2)


def test_reclaim_at_the_attempt_limit_fails_the_row(db: Database) -> None:
    _seed(db, hooks=1, events=1)
    claim = _claim(db, lease=-1, max_attempts=1)[0]
    assert _claim(db, max_attempts=1) == []
    assert (_row(db, claim.id).status, _row(db, claim.id).last_error) == ("failed", store.LEASE_EXPIRED)


def test_release_and_retry_schedule(db: Database) -> None:
    _seed(db, hooks=1, events=1)
    claim = _claim(db)[0]
    with db.write_session() as session:
        assert store.release(session, claim, utcnow())
    assert (_row(db, claim.id).status, _row(db, claim.id).attempts) == ("pending", 0)
    claim = _claim(db)[0]
    later = utcnow() + timedelta(seconds=30)
    with db.write_session() as session:
        assert store.mark_attempt_failed(session, claim, "ConnectError: refused", later)
    assert _claim(db) == []
    assert [c.id for c in _claim(db, now=later + timedelta(seconds=1))] == [claim.id]


def test_retry_of_failed_and_delete_cascades(db: Database) -> None:
    hook = _seed(db, hooks=1, events=1)[0]
    claim = _claim(db)[0]
    with db.write_session() as session:
        store.mark_attempt_failed(session, claim, "HTTP 500", None)
    with db.write_session() as session:
        with pytest.raises(store.DeliveryNotFound):
            store.retry_delivery(session, claim.id + 1000)
    with db.write_session() as session:
        row = store.retry_delivery(session, claim.id)
        assert (row.status, row.attempts) == ("pending", 0)
    with db.write_session() as session:
        store.delete_webhook(session, hook)
    with db.read_session() as session:
        assert store.list_deliveries(session) == []
        with pytest.raises(store.WebhookNotFound):
            store.get_webhook(session, hook)


def test_migration_scrubs_receiver_bodies_from_stored_errors(database_url: str) -> None:
    upgrade(database_url, "0004")
    database = Database(database_url, 2)
    try:
        with database.write_session() as session:
            hook = store.create_webhook(session, url="http://127.0.0.1:9/x", secret=SECRET, events=["rule.fired"],
                                        fmt="standard", run_id=None)
            rows = [WebhookDelivery(webhook_id=hook.id, event_id=f"evt_{n}", event_type="rule.fired",
                                    payload={}, last_error=error)
                    for n, error in enumerate(['HTTP 500: {"internal":"stack trace"}', "HTTP 404", None,
                                               store.LEASE_EXPIRED])]
            session.add_all(rows)
        upgrade(database_url)
        with database.read_session() as session:
            errors = [row.last_error for row in store.list_deliveries(session)]
    finally:
        database.dispose()
    assert sorted(errors, key=str) == sorted(["HTTP 500", "HTTP 404", None, store.LEASE_EXPIRED], key=str)
