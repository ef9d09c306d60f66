"""Request bodies: the standard JSON envelope, or Slack-compatible ``{"text": ...}``.

The stored payload is always the standard envelope; the body is rendered per attempt
from it, and the exact bytes rendered are the bytes signed and sent.
"""

from __future__ import annotations

import json
from typing import Any

FORMATS = ("standard", "slack")

_RULE_ICONS = {"fired": ":rotating_light:", "resolved": ":white_check_mark:"}
_DECISION_ICONS = {"pause": ":double_vertical_bar:", "continue": ":arrow_forward:"}


def render_body(payload: dict[str, Any], fmt: str) -> str:
    """The body text for ``fmt`` (compact JSON, deterministic key order)."""
    body = {"text": slack_text(payload)} if fmt == "slack" else payload
    return json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)


def _where(data: dict[str, Any]) -> str:
    parts = [f"{name} {data[name]}" for name in ("step", "epoch") if data.get(name) is not None]
    return f" at {', '.join(parts)}" if parts else ""


def _link(data: dict[str, Any]) -> str:
    url = data.get("dashboard_url")
    return f" <{url}|Open dashboard>" if url else ""


def _rule_text(kind: str, data: dict[str, Any]) -> str:
    icon = _RULE_ICONS.get(kind, ":bell:")
    severity = data.get("severity") or "warning"
    reading = f"{data.get('metric')}={data.get('value')}"
    if data.get("threshold") is not None:
        reading += f" (threshold {data['threshold']})"
    return (
        f"{icon} [{severity}] rule *{data.get('rule')}* {kind} on run `{data.get('run_id')}` "
        f"rank {data.get('rank', 0)}: {reading}{_where(data)}. "
        f"Decision: *{data.get('decision')}*.{_link(data)}"
    )


def _describe(item: Any, name_key: str) -> str:
    """``rule (metric=value)`` for a reason, ``action x0.5`` for an action, str otherwise."""
    if not isinstance(item, dict):
        return str(item)
    text = str(item.get(name_key, "?"))
    if item.get("metric") is not None:
        text += f" ({item['metric']}={item.get('value')})"
    if item.get("factor") is not None:
        text += f" x{item['factor']}"
    return text


def _decision_text(decision: str, data: dict[str, Any]) -> str:
    icon = _DECISION_ICONS.get(decision, ":bell:")
    reasons = ", ".join(_describe(reason, "rule") for reason in data.get("reasons") or []) or "none"
    actions = ", ".join(_describe(action, "action") for action in data.get("actions") or [])
    text = f"{icon} run `{data.get('run_id')}` decision: *{decision}*{_where(data)}. Reasons: {reasons}."
    if actions:
        text += f" Actions: {actions}."
    return text + _link(data)


def _config_text(data: dict[str, Any]) -> str:
    paths = [".".join(str(part) for part in item.get("path") or []) for item in data.get("changes") or []]
    count = data.get("changed_count", len(paths))
    listed = ", ".join(f"`{path}`" for path in paths[:5]) + (", ..." if count > 5 else "")
    text = f":gear: run `{data.get('run_id')}` config changed ({count} key(s)): {listed or 'none'}."
    if data.get("decision_before") != data.get("decision_after"):
        text += f" Decision: *{data.get('decision_before')}* -> *{data.get('decision_after')}*."
    return text + _link(data)


def slack_text(payload: dict[str, Any]) -> str:
    """One human-readable line (Slack mrkdwn) summarising the event, with the dashboard link."""
    event_type = str(payload.get("type", ""))
    data = payload.get("data") or {}
    family, _, detail = event_type.partition(".")
    if family == "rule":
        return _rule_text(detail, data)
    if family == "decision":
        return _decision_text(detail, data)
    if event_type == "config.changed":
        return _config_text(data)
    return f":bell: {event_type} on run `{data.get('run_id')}`.{_link(data)}"
