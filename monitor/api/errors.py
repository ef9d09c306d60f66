"""Map domain errors to JSON ``{"detail": ...}`` answers with the right status."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from monitor.store.runs import RunNotFound
from monitor.store.unavailable import is_unavailable

log = logging.getLogger(__name__)


class InvalidConfig(ValueError):
    """A run config whose thresholds cannot be used (422)."""


def unavailable_response() -> JSONResponse:
    """503 with Retry-After: the database is down or busy, the same request may succeed soon."""
    return JSONResponse(status_code=503, content={"detail": "database unavailable, retry later"},
                        headers={"Retry-After": "1"})


def _sendable(text: str) -> str:
    """``text`` with lone surrogates spelled as escapes (they cannot be encoded as UTF-8)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """``type``, ``loc`` and ``msg`` of each error, never its ``input``: a rejected body may
    carry secrets (webhook signing secrets), and echoed text may not even be encodable."""
    details = []
    for error in errors:
        loc = [part if isinstance(part, int) else _sendable(str(part)) for part in error.get("loc", ())]
        details.append({"type": _sendable(str(error.get("type", ""))), "loc": loc,
                        "msg": _sendable(str(error.get("msg", "")))})
    return details


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_details(exc.errors())})

    @app.exception_handler(RunNotFound)
    async def _run_not_found(_request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidConfig)
    async def _invalid_config(_request: Request, exc: InvalidConfig) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _sendable(f"invalid run config: {exc}")})

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        if is_unavailable(exc):
            log.warning("database unavailable: %s", exc.orig)
            return unavailable_response()
        # A query the database refused is our bug: retrying cannot help, so no 503.
        log.error("database error", exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": "internal error (database)"})
