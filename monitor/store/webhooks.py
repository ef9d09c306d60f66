"""Queries on webhooks and their outbox rows: subscriptions, claims, outcomes.

A delivery row moves ``pending -> delivering -> delivered | pending (retry) | failed``.
Claiming sets ``delivering`` with a lease in ``next_attempt_at``; a row whose lease ran
out (its process died mid-send) is due again, so delivery survives restarts. Every claim
and outcome is a conditional UPDATE on (id, status, next_attempt_at): only one process can
win a row, and a worker that lost its lease cannot overwrite the new owner's outcome.
On PostgreSQL the candidates are also locked ``FOR UPDATE SKIP LOCKED`` so concurrent
claimers pass over each other's rows instead of waiting; SQLite writers are serialised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.orm import Session

from monitor.store.models import Webhook, WebhookDelivery, utcnow
from monitor.store.runs import get_run

DELIVERY_STATUSES = ("pending", "delivering", "delivered", "failed")
LEASE_EXPIRED = "lease expired: the sending process stopped before recording an outcome"


class WebhookNotFound(LookupError):
    """Unknown webhook id (404)."""

    def __init__(self, webhook_id: int) -> None:
        super().__init__(f"webhook {webhook_id} not found")


class DeliveryNotFound(LookupError):
    """Unknown delivery id (404)."""

    def __init__(self, delivery_id: int) -> None:
        super().__init__(f"delivery {delivery_id} not found")


class DeliveryNotFailed(ValueError):
    """Only failed deliveries can be queued again (409)."""


@dataclass(frozen=True)
class ClaimedDelivery:
    """What a sender needs, detached from any session.

    ``lease_until`` is the claim's fencing token: every claim writes a later one into
    ``next_attempt_at``, and an outcome is stored only where it still matches, so a sender
    whose claim was taken over can never overwrite the new owner's outcome.
    """

    id: int
    webhook_id: int
    event_id: str
    event_type: str
    payload: dict[str, Any]
    attempts: int
    lease_until: datetime
    url: str
    secret: str
    format: str


# --- subscriptions -----------------------------------------------------------------


def create_webhook(
    session: Session, *, url: str, secret: str, events: Sequence[str], fmt: str, run_id: str | None
) -> Webhook:
    """Store a subscription (flushed, so its id is known); RunNotFound (404) for an unknown run,
    since a subscription to a run that does not exist yet would silently never fire."""
    if run_id is not None:
        get_run(session, run_id)
    hook = Webhook(url=url, secret=secret, events=list(events), format=fmt, run_id=run_id, active=True)
    session.add(hook)
    session.flush()
    return hook


def list_webhooks(session: Session) -> list[Webhook]:
    """Every subscription, oldest first."""
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def get_webhook(session: Session, webhook_id: int) -> Webhook:
    """One subscription, or WebhookNotFound."""
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise WebhookNotFound(webhook_id)
    return hook


def delete_webhook(session: Session, webhook_id: int) -> None:
    """Remove a subscription and (by cascade) its deliveries; WebhookNotFound if unknown."""
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
    if session.execute(delete(Webhook).where(Webhook.id == webhook_id)).rowcount == 0:
        raise WebhookNotFound(webhook_id)


def list_deliveries(
    session: Session, *, webhook_id: int | None = None, status: str | None = None,
    limit: int = 100, offset: int = 0,
) -> list[WebhookDelivery]:
    """Deliveries, newest first, optionally of one webhook and/or in one status."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit).offset(offset)
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query))


def retry_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    """Queue a failed delivery again with a fresh attempt budget (same webhook-id)."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise DeliveryNotFound(delivery_id)
    if row.status != "failed":
        raise DeliveryNotFailed(f"delivery {delivery_id} is {row.status}, not failed")
    row.status, row.attempts, row.next_attempt_at = "pending", 0, utcnow()
    session.flush()
    return row


# --- the worker's side -------------------------------------------------------------


def _due(now: datetime) -> ColumnElement[bool]:
    """Pending rows whose time has come, and claimed rows whose lease ran out."""
    return and_(WebhookDelivery.status.in_(("pending", "delivering")), WebhookDelivery.next_attempt_at <= now)


def _idle(now: datetime, busy_webhooks: Sequence[int]) -> ColumnElement[bool]:
    """Webhooks with no send in flight anywhere (a live lease) nor in this process.

    One send at a time per webhook: a slow receiver holds one slot, not all of them,
    and its events arrive roughly in order.
    """
    leased = select(WebhookDelivery.webhook_id).where(
        WebhookDelivery.status == "delivering", WebhookDelivery.next_attempt_at > now
    )
    idle = WebhookDelivery.webhook_id.not_in(leased)
    return and_(idle, WebhookDelivery.webhook_id.not_in(busy_webhooks)) if busy_webhooks else idle


def has_due(session: Session, now: datetime, busy_webhooks: Sequence[int] = ()) -> bool:
    """Cheap read-only probe, so idle polls never take SQLite's write lock."""
    query = select(WebhookDelivery.id).where(_due(now), _idle(now, busy_webhooks)).limit(1)
    return session.execute(query).first() is not None


def _candidates(session: Session, now: datetime, limit: int, busy_webhooks: Sequence[int]) -> list[Any]:
    """The oldest due row of each idle webhook, with its URL (locked, skipping others' locks,
    on PostgreSQL)."""
    heads = (
        select(func.min(WebhookDelivery.id))
        .where(_due(now), _idle(now, busy_webhooks))
        .group_by(WebhookDelivery.webhook_id)
    )
    cols = (WebhookDelivery.id, WebhookDelivery.status, WebhookDelivery.next_attempt_at, WebhookDelivery.attempts)
    query = (
        select(*cols, Webhook.url).join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id.in_(heads), _due(now)).order_by(WebhookDelivery.id).limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=WebhookDelivery, skip_locked=True)
    return list(session.execute(query).all())


def _take(session: Session, row: Any, values: dict[str, Any]) -> bool:
    """Conditional UPDATE: applies only if the row is still as we read it."""
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == row.id, WebhookDelivery.status == row.status,
               WebhookDelivery.next_attempt_at == row.next_attempt_at)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1


def claim_due(
    session: Session, *, now: datetime, lease_until: datetime, limit: int,
    busy_webhooks: Sequence[int] = (), max_attempts: int, admit: Callable[[str], bool] | None = None,
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` due rows (one per webhook); ``attempts`` counts attempts started.

    ``admit(url)`` may pass over a row whose receiver already has enough sends in flight;
    more candidates than ``limit`` are read so that others can take the free slots.
    """
    claimed: list[int] = []
    for row in _candidates(session, now, limit if admit is None else max(8 * limit, 32), busy_webhooks):
        if len(claimed) >= limit:
            break
        reclaimed = row.status == "delivering"
        if reclaimed and row.attempts >= max_attempts:
            _take(session, row, {"status": "failed", "last_error": LEASE_EXPIRED})
            continue
        if admit is not None and not admit(row.url):
            continue
        values: dict[str, Any] = {"status": "delivering", "next_attempt_at": lease_until,
                                  "attempts": row.attempts + 1}
        if reclaimed:
            values["last_error"] = LEASE_EXPIRED
        if _take(session, row, values):
            claimed.append(row.id)
    return _load_claims(session, claimed, lease_until)


def _load_claims(session: Session, ids: list[int], lease_until: datetime) -> list[ClaimedDelivery]:
    if not ids:
        return []
    query = (
        select(WebhookDelivery, Webhook.url, Webhook.secret, Webhook.format)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.id.in_(ids))
        .order_by(WebhookDelivery.id)
    )
    return [
        ClaimedDelivery(id=row.id, webhook_id=row.webhook_id, event_id=row.event_id, event_type=row.event_type,
                        payload=row.payload, attempts=row.attempts, lease_until=lease_until,
                        url=url, secret=secret, format=fmt)
        for row, url, secret, fmt in session.execute(query).all()
    ]


def _finish(session: Session, claim: ClaimedDelivery, values: dict[str, Any]) -> bool:
    """Record an outcome if we still hold the lease (False: someone else owns the row now)."""
    stmt = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claim.id, WebhookDelivery.status == "delivering",
               WebhookDelivery.next_attempt_at == claim.lease_until)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1


def mark_delivered(session: Session, claim: ClaimedDelivery, now: datetime) -> bool:
    """The receiver answered 2xx."""
    return _finish(session, claim, {"status": "delivered", "delivered_at": now, "next_attempt_at": now,
                                    "last_error": None})


def mark_attempt_failed(session: Session, claim: ClaimedDelivery, error: str, retry_at: datetime | None) -> bool:
    """Schedule a retry at ``retry_at``, or give up (``None``) with status ``failed``."""
    values: dict[str, Any] = {"last_error": error[:2000]}
    if retry_at is None:
        values.update(status="failed", next_attempt_at=utcnow())
    else:
        values.update(status="pending", next_attempt_at=retry_at)
    return _finish(session, claim, values)


def release(session: Session, claim: ClaimedDelivery, now: datetime) -> bool:
    """Hand back a claimed row that was never sent (clean shutdown), uncounted."""
    return _finish(session, claim, {"status": "pending", "next_attempt_at": now,
                                    "attempts": max(claim.attempts - 1, 0)})
