"""Webhook subscription and delivery bodies.

The signing secret is write-only: accepted (or generated) on create and returned in
that one response; every other schema leaves it out so it cannot leak by accident.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from monitor.alerts import signing, urls
from monitor.alerts.outbox import EVENT_TYPES
from monitor.schemas.runs import RUN_ID_PATTERN

EventType = Literal["rule.fired", "rule.resolved", "decision.pause", "decision.continue", "config.changed"]
if set(get_args(EventType)) != set(EVENT_TYPES):  # fail at import, not in production traffic
    raise RuntimeError("keep EventType in step with monitor.alerts.outbox.EVENT_TYPES")
DeliveryStatus = Literal["pending", "delivering", "delivered", "failed"]


def _as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class WebhookCreate(BaseModel):
    """Body of ``POST /api/v1/webhooks``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=urls.MAX_URL_LENGTH, description="http(s) receiver; no credentials in it.")
    secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks secret 'whsec_<base64>' (24-64 bytes); generated if absent."
    )
    events: list[EventType] = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)
    format: Literal["standard", "slack"] = "standard"
    run_id: str | None = Field(default=None, pattern=RUN_ID_PATTERN, description="Only this run's events.")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        return urls.check_syntax(url)

    def signing_secret(self) -> str:
        """The caller's secret normalised, or a new one; ValueError (without the secret) if unusable.

        Checked here rather than by a validator because validation errors echo their input.
        """
        if self.secret is None:
            return signing.generate_secret()
        return signing.normalise_secret(self.secret.get_secret_value())

    @field_validator("events")
    @classmethod
    def _unique_events(cls, events: list[EventType]) -> list[EventType]:
        return list(dict.fromkeys(events))


class WebhookOut(BaseModel):
    """A subscription as listed; never carries the secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    format: str
    run_id: str | None
    active: bool
    created_at: UtcDatetime


class WebhookCreated(WebhookOut):
    """Create answer: the only response that shows the secret (store it now)."""

    secret: str


class DeliveryOut(BaseModel):
    """One outbox row: where a delivery stands, and why it last failed."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    webhook_id: int
    event_id: str = Field(description="Sent as the webhook-id header; stable across retries.")
    event_type: str
    run_id: str | None
    status: str
    attempts: int
    next_attempt_at: UtcDatetime
    last_error: str | None
    created_at: UtcDatetime
    delivered_at: UtcDatetime | None
    payload: dict[str, Any]
