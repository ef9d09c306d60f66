"""The bearer-token check as plain ASGI middleware, before any body is read or parsed.

FastAPI reads and decodes a JSON body before it runs route dependencies, so without this
an unauthenticated request with a broken body learnt "422 JSON decode error" instead of
401. API paths are refused here first; ``require_token`` stays on the routers as the
check for pages' data and ``/metrics`` (which may be public) and as a second line.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.requests import HTTPConnection

from monitor.api.deps import UNAUTHORIZED_DETAIL, UNAUTHORIZED_HEADERS, presented_token, token_is_valid
from monitor.api.errors import unavailable_response
from monitor.store.unavailable import is_unavailable

Scope = dict[str, Any]
GUARDED_PREFIXES = ("/api/", "/escalation/")


class TokenGate:
    """401 for requests to guarded paths without a known token (header or dashboard cookie)."""

    def __init__(self, app: Any, prefixes: tuple[str, ...] = GUARDED_PREFIXES) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        verifier = connection.app.state.verifier
        try:  # the verifier may refresh its stored hashes from the database: not on the event loop
            valid = await token_is_valid(verifier, presented_token(connection))
        except DBAPIError as exc:
            if not is_unavailable(exc):
                raise
            await unavailable_response()(scope, receive, send)
            return
        if not valid:
            refused = JSONResponse({"detail": UNAUTHORIZED_DETAIL}, status_code=401, headers=UNAUTHORIZED_HEADERS)
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)
