"""Map domain errors to JSON ``{"detail": ...}`` answers with the right status."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from monitor.ingest.failures import IngestFailed, IngestWorkerLost, InvalidBody, TooManyRecords
from monitor.store.runs import RunNotFound
from monitor.store.unavailable import DatabaseUnavailable, is_unavailable

log = logging.getLogger(__name__)


class ThrottledWarning:
    """One warning at most every ``seconds``, with how many were held back since.

    Why: during a database outage every request fails the same way; one line per request
    (about 60 a second under load) buries the rest of the log.
    """

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._next_at = 0.0
        self._held_back = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next_at:
            self._held_back += 1
            return
        if self._held_back:
            message += f" ({self._held_back} more like it since the last report)"
        log.warning(message, *args)
        self._next_at, self._held_back = now + self.seconds, 0


class InvalidConfig(ValueError):
    """A run config whose thresholds cannot be used (422)."""


def validation_error(problems: Sequence[tuple[Sequence[str | int], str, str]]) -> RequestValidationError:
    """A 422 in the documented shape for a check a route makes itself: one (loc, msg, type) each."""
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": type_} for loc, msg, type_ in problems])


def unavailable_response(detail: str = "database unavailable, retry later") -> JSONResponse:
    """503 with Retry-After: the database (or an ingest worker) is down or busy; the same
    request may succeed soon."""
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": "1"})


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

    @app.exception_handler(InvalidBody)
    async def _invalid_body(_request: Request, exc: InvalidBody) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_details(exc.errors)})

    @app.exception_handler(TooManyRecords)
    async def _too_many_records(_request: Request, exc: TooManyRecords) -> JSONResponse:
        return JSONResponse(status_code=413, content={"detail": str(exc)})

    @app.exception_handler(RunNotFound)
    async def _run_not_found(_request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidConfig)
    async def _invalid_config(_request: Request, exc: InvalidConfig) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _sendable(f"invalid run config: {exc}")})

    warn_unavailable = ThrottledWarning()

    @app.exception_handler(DatabaseUnavailable)
    async def _unavailable(_request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        warn_unavailable("database unavailable: %s", exc)
        return unavailable_response()

    @app.exception_handler(IngestWorkerLost)
    async def _worker_lost(_request: Request, exc: IngestWorkerLost) -> JSONResponse:
        return unavailable_response(str(exc))

    @app.exception_handler(IngestFailed)
    async def _ingest_failed(_request: Request, exc: IngestFailed) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": str(exc)})  # logged where it happened

    @app.exception_handler(DBAPIError)
    async def _database_error(_request: Request, exc: DBAPIError) -> JSONResponse:
        if is_unavailable(exc):
            warn_unavailable("database unavailable: %s", exc.orig)
            return unavailable_response()
        # A query the database refused is our bug: retrying cannot help, so no 503.
        log.error("database error", exc_info=exc)
        return JSONResponse(status_code=500, content={"detail": "internal error (database)"})
