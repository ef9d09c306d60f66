"""Recording a run's config change: one ``config.changed`` run event, and its webhook.

Why: a second PUT replaced the whole config without a trace; demoting
``attention_collapse`` turned pause into continue and nobody could tell why. Runs in the
PUT's transaction, after the decision was refreshed, so the event says what the change
did to the decision and commits (or not) together with the config.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from monitor.alerts import outbox
from monitor.config_diff import config_diff
from monitor.store import events
from monitor.store.models import Run

CONFIG_CHANGED = "config.changed"


def record_config_change(session: Session, run: Run, replaced: dict[str, Any], decision_before: str,
                         link: str) -> dict[str, Any]:
    """Store the event (diff of ``replaced`` -> ``run.config``) and queue its webhook; returns the payload."""
    payload = {
        **config_diff(replaced, run.config or {}),
        "config_sha256": run.config_sha256,
        "decision_before": decision_before,
        "decision_after": run.decision,
        "step": run.last_step,  # where on the charts' step axis the change took effect
        "epoch": run.last_epoch,
    }
    events.add_run_event(session, run.run_id, CONFIG_CHANGED, payload)
    outbox.enqueue(session, run.run_id, CONFIG_CHANGED,
                   {"run_id": run.run_id, "run_name": run.name, **payload, "dashboard_url": link})
    return payload
