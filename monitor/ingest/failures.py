"""Ingestion's errors, and how a worker process carries one back to its server process.

The ingestion code raises these plain exceptions (no HTTP here: a worker process never
imports FastAPI, which halves its start-up); ``monitor.api.errors`` answers them (422,
413, 404, 503, 500), whether they were raised in a thread of the server process or
raised there again from a worker's ``WorkFailure``. Exceptions do not all survive
pickling, and a traceback from another process helps nobody reading an API answer, so a
worker sends plain data instead; unexpected errors are logged, with their traceback,
where they happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy.exc import DBAPIError

from monitor.store.runs import RunNotFound
from monitor.store.unavailable import DatabaseUnavailable, is_unavailable

log = logging.getLogger(__name__)


class InvalidBody(ValueError):
    """The body failed validation (422); ``errors`` are located like FastAPI's (``loc`` starts with "body")."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


class TooManyRecords(ValueError):
    """More records in one request than ``max_records_per_request`` allows (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} records per request")
        self.limit = limit


class IngestFailed(Exception):
    """Ingestion failed in a way a retry will not cure (500 with this message as ``detail``)."""


class IngestWorkerLost(Exception):
    """The ingest worker process died or could not be started (503: the retry is safe,
    because ingestion is idempotent on (run, rank, step))."""


@dataclass(frozen=True)
class WorkFailure:
    """What went wrong in a worker, as plain data: ``kind`` picks the exception raised again."""

    kind: str  # invalid_body | too_many | not_found | unavailable | internal
    detail: Any

    def raise_again(self) -> NoReturn:
        if self.kind == "invalid_body":
            raise InvalidBody(self.detail)
        if self.kind == "too_many":
            raise TooManyRecords(self.detail)
        if self.kind == "not_found":
            raise RunNotFound(self.detail)
        if self.kind == "unavailable":
            raise DatabaseUnavailable(self.detail)
        raise IngestFailed(self.detail)


def describe(exc: BaseException) -> WorkFailure:
    """The failure to send back for ``exc`` (unexpected ones are logged here, with traceback)."""
    if isinstance(exc, InvalidBody):
        return WorkFailure("invalid_body", exc.errors)
    if isinstance(exc, TooManyRecords):
        return WorkFailure("too_many", exc.limit)
    if isinstance(exc, RunNotFound):
        return WorkFailure("not_found", exc.run_id)
    if isinstance(exc, DatabaseUnavailable):
        return WorkFailure("unavailable", str(exc))
    if isinstance(exc, DBAPIError):
        if is_unavailable(exc):
            return WorkFailure("unavailable", str(exc.orig))
        log.error("database error", exc_info=exc)  # a query the database refused is our bug: no 503
        return WorkFailure("internal", "internal error (database)")
    log.error("ingestion failed", exc_info=exc)
    return WorkFailure("internal", "internal error (ingestion)")
