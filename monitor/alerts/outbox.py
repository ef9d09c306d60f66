"""Writing alert events into the outbox, in the caller's transaction.

The rows are committed together with the rule state that caused them, so an event is
never lost between "rule fired" and "webhook sent"; the delivery worker sends them later.
Each row gets its own ``event_id`` that becomes the ``webhook-id`` header of every attempt,
so a receiver can drop the duplicates that at-least-once delivery may produce.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from monitor.floats import encode_tree
from monitor.store.models import Webhook, WebhookDelivery

EVENT_TYPES = ("rule.fired", "rule.resolved", "decision.pause", "decision.continue", "config.changed")


def iso_now() -> str:
    """UTC now as ISO 8601 with a ``Z`` (what receivers parse most easily)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_event(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """A Standard Webhooks style envelope: type, timestamp, data (NaN spelled as strings)."""
    return {"type": event_type, "timestamp": iso_now(), "data": encode_tree(data)}


def new_event_id() -> str:
    """A unique, stable message id (``webhook-id``); fits the 64-character column."""
    return f"evt_{uuid.uuid4().hex}"


def _subscribers(session: Session, event_type: str, run_id: str) -> list[Webhook]:
    """Active webhooks that want this event type for this run (or for every run)."""
    query = select(Webhook).where(
        Webhook.active.is_(True), or_(Webhook.run_id.is_(None), Webhook.run_id == run_id)
    ).order_by(Webhook.id)
    return [hook for hook in session.scalars(query) if event_type in (hook.events or [])]


def enqueue(session: Session, run_id: str, event_type: str, data: dict[str, Any]) -> int:
    """Queue one delivery per subscriber; returns how many were queued.

    Never raises for an event nobody subscribed to: alerting must not fail ingestion.
    """
    hooks = _subscribers(session, event_type, run_id)
    if not hooks:
        return 0
    payload = build_event(event_type, data)
    for hook in hooks:
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event_id=new_event_id(),
                event_type=event_type,
                run_id=run_id,
                payload=payload,
            )
        )
    return len(hooks)
