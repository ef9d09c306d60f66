"""Prometheus scrape endpoint.

Bearer token by default, like every other API call: Prometheus sends one with
``authorization: {credentials_file: ...}`` in its scrape config. Where the port is only
reachable from the monitoring network, ``MONITOR_METRICS_PUBLIC=true`` drops the check.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from monitor.api.deps import DbDep, require_token
from monitor.metrics import render_metrics


async def require_metrics_access(request: Request) -> None:
    """The API token, unless the operator made the metrics public."""
    if not request.app.state.settings.metrics_public:
        await require_token(request)


router = APIRouter(tags=["operations"], dependencies=[Depends(require_metrics_access)])


@router.get("/metrics", response_class=Response)
def metrics(db: DbDep) -> Response:
    """Counters of every worker process plus outbox depth read from the database now."""
    return Response(content=render_metrics(db), media_type=CONTENT_TYPE_LATEST)
