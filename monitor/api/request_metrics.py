"""Per-request observability as plain ASGI middleware: Prometheus series and an access log line.

Labels use the route *template* (``/api/v1/runs/{run_id}/diagnostics``), never the raw
path, so a run id cannot explode the number of series. Requests answered before routing
(413 from the body limit) are matched against the OpenAPI path templates; unknown paths share one
``<unmatched>`` label. The access line carries the same fields as structured ``extra``,
so ``MONITOR_LOG_JSON=true`` gives log shippers method/route/status/duration as keys.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from monitor.metrics import observe_request

Scope = dict[str, Any]
Templates = Sequence[tuple[re.Pattern[str], str]]  # (compiled path pattern, template)
UNMATCHED = "<unmatched>"
# Probes and scrapes arrive every few seconds; their access lines go to DEBUG.
QUIET_ROUTES = frozenset({"/healthz", "/metrics"})

access_log = logging.getLogger("monitor.access")


def route_template(scope: Scope, fallback: Templates = ()) -> str:
    """The template of the route that served (or, per ``fallback``, would have served) the request."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if template:
        return template
    path = scope.get("path", "")
    return next((template for pattern, template in fallback if pattern.fullmatch(path)), UNMATCHED)


def schema_templates(app: Any) -> Templates:
    """Path templates from the OpenAPI schema (a public, stable view of every API route)."""
    try:
        paths = app.openapi()["paths"]
    except Exception:  # noqa: BLE001 - metrics must never break a request
        return []
    return [(re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path))), path) for path in paths]


class RequestMetrics:
    """Count and time every HTTP request; exceptions count as 500."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._fallback: Templates | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            if "route" not in scope and self._fallback is None:  # answered before routing (413)
                self._fallback = schema_templates(scope.get("app"))
            record_request(scope, status, time.perf_counter() - started, self._fallback)


def record_request(
    scope: Scope, status: int, seconds: float, fallback: Templates = (), route: str | None = None
) -> None:
    """Update the Prometheus series and write the access line (``route``: the template, if known)."""
    method = scope.get("method", "")
    route = route or route_template(scope, fallback)
    observe_request(method, route, status, seconds)
    level = logging.DEBUG if route in QUIET_ROUTES else logging.INFO
    if access_log.isEnabledFor(level):
        duration_ms = round(seconds * 1000, 2)
        access_log.log(
            level, "%s %s %s %.1fms", method, scope.get("path", ""), status, duration_ms,
            extra={"method": method, "route": route, "path": scope.get("path", ""), "status": status,
                   "duration_ms": duration_ms},
        )
