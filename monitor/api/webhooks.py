"""Webhook subscriptions and the delivery log (so failures are visible, not just logged)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from monitor.alerts import urls
from monitor.api.deps import DbDep, SettingsDep, require_token
from monitor.api.errors import unprocessable
from monitor.api.paging import Limit, Offset
from monitor.schemas.webhooks import DeliveryOut, DeliveryStatus, WebhookCreate, WebhookCreated, WebhookOut
from monitor.store import webhooks as store

router = APIRouter(prefix="/api/v1", tags=["webhooks"], dependencies=[Depends(require_token)])
WebhookId = Annotated[int, Path(ge=1, le=2**62)]
DeliveryId = Annotated[int, Path(ge=1, le=2**62)]


def _not_found(exc: LookupError) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))


def _wake_worker(request: Request) -> None:
    """Let this process's worker look now rather than at its next poll."""
    worker = getattr(request.app.state, "delivery_worker", None)
    if worker is not None:
        worker.wake()


@router.post("/webhooks", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED,
             responses={404: {"description": "run_id names no run; nothing is stored"}})
def create_webhook(body: WebhookCreate, db: DbDep, settings: SettingsDep) -> Any:
    """Subscribe; the answer carries the signing secret, shown this once only.

    404 if ``run_id`` names no run (nothing is stored then).
    """
    try:
        urls.check_destination(body.url, settings.webhook_allow_private)
    except urls.UnsafeUrl as exc:
        raise unprocessable(["body", "url"], f"invalid url: {exc}") from None
    try:
        secret = body.signing_secret()
    except ValueError as exc:
        raise unprocessable(["body", "secret"], f"invalid secret: {exc}") from None
    with db.write_session() as session:
        hook = store.create_webhook(session, url=body.url, secret=secret, events=body.events,
                                    fmt=body.format, run_id=body.run_id)
        out = WebhookOut.model_validate(hook).model_dump()
    return WebhookCreated(**out, secret=secret)


@router.get("/webhooks", response_model=list[WebhookOut])
def list_webhooks(db: DbDep) -> Any:
    """Every subscription (without secrets)."""
    with db.read_session() as session:
        return [WebhookOut.model_validate(hook) for hook in store.list_webhooks(session)]


@router.get("/webhooks/{webhook_id}", response_model=WebhookOut)
def get_webhook(webhook_id: WebhookId, db: DbDep) -> Any:
    """One subscription (without its secret)."""
    with db.read_session() as session:
        try:
            return WebhookOut.model_validate(store.get_webhook(session, webhook_id))
        except store.WebhookNotFound as exc:
            raise _not_found(exc) from None


@router.delete("/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_webhook(webhook_id: WebhookId, db: DbDep) -> Response:
    """Unsubscribe; queued deliveries of this webhook are dropped with it."""
    try:
        with db.write_session() as session:
            store.delete_webhook(session, webhook_id)
    except store.WebhookNotFound as exc:
        raise _not_found(exc) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryOut])
def list_webhook_deliveries(
    webhook_id: WebhookId, db: DbDep, status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = 100, offset: Offset = 0,
) -> Any:
    """This webhook's deliveries, newest first."""
    with db.read_session() as session:
        try:
            store.get_webhook(session, webhook_id)
        except store.WebhookNotFound as exc:
            raise _not_found(exc) from None
        rows = store.list_deliveries(session, webhook_id=webhook_id, status=status_filter, limit=limit, offset=offset)
        return [DeliveryOut.model_validate(row) for row in rows]


@router.get("/deliveries", response_model=list[DeliveryOut])
def list_deliveries(
    db: DbDep, status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    webhook_id: Annotated[int | None, Query(ge=1, le=2**62)] = None, limit: Limit = 100, offset: Offset = 0,
) -> Any:
    """All deliveries, newest first; ``?status=failed`` lists what never arrived."""
    with db.read_session() as session:
        rows = store.list_deliveries(session, webhook_id=webhook_id, status=status_filter, limit=limit, offset=offset)
        return [DeliveryOut.model_validate(row) for row in rows]


@router.post("/deliveries/{delivery_id}/retry", response_model=DeliveryOut)
def retry_delivery(delivery_id: DeliveryId, db: DbDep, request: Request) -> Any:
    """Queue a failed delivery again (same webhook-id, fresh attempt budget)."""
    try:
        with db.write_session() as session:
            out = DeliveryOut.model_validate(store.retry_delivery(session, delivery_id))
    except store.DeliveryNotFound as exc:
        raise _not_found(exc) from None
    except store.DeliveryNotFailed as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    _wake_worker(request)
    return out
