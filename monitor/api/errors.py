"""Map domain errors to JSON ``{"detail": ...}`` answers with the right status."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from monitor.api.read_slots import ReadsBusy
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


# A ``loc`` part is a field name we may repeat; anything else (a client's dict key with
# markup, spaces, NUL...) is replaced, so a 422 never carries the client's text back.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
HIDDEN_KEY = "(key)"
HIDDEN_MSG = "invalid value (the value is not repeated in this answer)"
_ECHO_MIN = 3  # shorter strings occur in ordinary messages by chance
_WALK_LIMIT = 2000  # strings looked at per error: a huge rejected body costs no more than this


def unprocessable(loc: list[str | int], msg: str, type: str = "value_error") -> RequestValidationError:  # noqa: A002
    """A 422 in the documented shape (``detail`` = [{type, loc, msg}]) from our own checks.

    Raise it from a route; ``msg`` must be written by us and never include the client's values.
    """
    return RequestValidationError([{"type": type, "loc": tuple(loc), "msg": msg}])


def _strings_in(value: Any) -> Iterable[str]:
    """Strings of a rejected input that a message must not repeat: its values, and its keys
    unless they are plain field names (those may be named, as in ``loc``); at most ``_WALK_LIMIT``."""
    pending, seen = [value], 0
    while pending and seen < _WALK_LIMIT:
        node = pending.pop()
        seen += 1
        if isinstance(node, str | int | float) and not isinstance(node, bool):
            yield str(node)
        elif isinstance(node, dict):
            pending.extend(key for key in node if not _PLAIN_KEY.fullmatch(str(key)))
            pending.extend(node.values())
        elif isinstance(node, list | tuple):
            pending.extend(node)


def _echoes(msg: str, inputs: Iterable[str]) -> bool:
    return any(len(text) >= _ECHO_MIN and text in msg for text in inputs)


def _loc_part(part: Any) -> str | int:
    if isinstance(part, int):
        return part
    text = str(part)
    return text if _PLAIN_KEY.fullmatch(text) else HIDDEN_KEY


def validation_details(errors: Sequence[Any], sent: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``type``, ``loc`` and ``msg`` of each error, never its ``input``, ``ctx`` or ``url``: a
    rejected body may carry secrets (webhook signing secrets) or markup, and echoed text may not
    even be encodable. A ``msg`` that repeats the input (or any of ``sent``: query and path
    values) is replaced by a generic one; ``loc`` keeps only plain field names."""
    details = []
    for error in errors:
        msg = str(error.get("msg", ""))
        if _echoes(msg, sent) or _echoes(msg, _strings_in(error.get("input"))):
            msg = HIDDEN_MSG
        details.append({"type": _sendable(str(error.get("type", ""))),
                        "loc": [_loc_part(part) for part in error.get("loc", ())], "msg": _sendable(msg)})
    return details


def _sent_values(request: Request) -> list[str]:
    """The request's query and path values: a message must not repeat them either."""
    return [*request.query_params.values(), *(str(value) for value in request.path_params.values())]


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        sent = [*_sent_values(request), *_strings_in(exc.body)]  # FastAPI keeps a rejected body here
        details = validation_details(exc.errors(), sent)
        return JSONResponse(status_code=422, content={"detail": details})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 422:  # a safety net: our code raises ``unprocessable`` instead
            return await _invalid_request(request, unprocessable([], str(exc.detail)))
        return await http_exception_handler(request, exc)

    @app.exception_handler(InvalidBody)
    async def _invalid_body(request: Request, exc: InvalidBody) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": validation_details(exc.errors, _sent_values(request))})

    @app.exception_handler(TooManyRecords)
    async def _too_many_records(_request: Request, exc: TooManyRecords) -> JSONResponse:
        return JSONResponse(status_code=413, content={"detail": str(exc)})

    @app.exception_handler(RunNotFound)
    async def _run_not_found(_request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidConfig)
    async def _invalid_config(request: Request, exc: InvalidConfig) -> JSONResponse:
        errors = unprocessable(["body", "config"], f"invalid run config: {exc}").errors()
        return JSONResponse(status_code=422, content={"detail": validation_details(errors, _sent_values(request))})

    warn_unavailable = ThrottledWarning()

    @app.exception_handler(DatabaseUnavailable)
    async def _unavailable(_request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        warn_unavailable("database unavailable: %s", exc)
        return unavailable_response()

    @app.exception_handler(ReadsBusy)
    async def _reads_busy(_request: Request, exc: ReadsBusy) -> JSONResponse:
        return unavailable_response(str(exc))

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
