"""Writing alert events into the outbox, in the caller's transaction.

The rows are committed together with the rule state that caused them, so an event is
never lost between "rule fired" and "webhook sent"; the delivery worker sends them later.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from monitor.floats import encode_tree
from monitor.store.models import Webhook, WebhookDelivery

EVENT_TYPES = ("rule.fired", "rule.resolved", "decision.pause", "decision.continue")


def build_event(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """A Standard Webhooks style envelope: type, timestamp, data."""
    return {"type": event_type, "timestamp": time.time(), "data": encode_tree(data)}


def _subscribers(session: Session, event_type: str, run_id: str) -> list[Webhook]:
    """Active webhooks that want this event type for this run (or for every run)."""
    hooks = session.scalars(select(Webhook).where(Webhook.active.is_(True)))
    return [
        hook
        for hook in hooks
        if event_type in (hook.events or []) and (hook.run_id is None or hook.run_id == run_id)
    ]


def enqueue(session: Session, run_id: str, event_type: str, data: dict[str, Any]) -> int:
    """Queue one delivery per subscriber; returns how many were queued."""
    payload = build_event(event_type, data)
    hooks = _subscribers(session, event_type, run_id)
    for hook in hooks:
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event_id=f"evt_{uuid.uuid4().hex}",
                event_type=event_type,
                run_id=run_id,
                payload=payload,
            )
        )
    return len(hooks)
