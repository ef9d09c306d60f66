"""Error mapping: which database errors are outages (503), validation answers that echo nothing."""

from __future__ import annotations

import logging
import sqlite3

import anyio
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DataError, OperationalError

from monitor.api import errors
from monitor.api.errors import install_error_handlers, validation_details
from monitor.store.unavailable import is_unavailable


def _sqlite(message: str, code: int | None = None) -> OperationalError:
    orig = sqlite3.OperationalError(message)
    if code is not None:
        orig.sqlite_errorcode = code  # type: ignore[attr-defined]
    return OperationalError("SELECT 1", {}, orig)


@pytest.mark.parametrize(("error", "outage"), [
    (_sqlite("database is locked"), True),
    (_sqlite("database is locked", code=5), True),
    (_sqlite("unable to open database file", code=14), True),
    (_sqlite('JSON path error near \'"a\'', code=1), False),
    (_sqlite("no such table: runs"), False),
    (OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")), True),
    (OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating connection")), True),
    (OperationalError("SELECT 1", {}, psycopg.errors.QueryCanceled("statement timeout")), False),
    (DataError("SELECT 1", {}, psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")), False),
])
def test_only_connection_and_lock_errors_are_outages(error: OperationalError, outage: bool) -> None:
    assert is_unavailable(error) is outage


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/locked")
    def locked() -> None:
        raise _sqlite("database is locked", code=5)

    @app.get("/bad-query")
    def bad_query() -> None:
        raise _sqlite('JSON path error near \'"a\'', code=1)

    return app


def get(path: str) -> httpx.Response:
    """One in-process request (no server, no database)."""

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return anyio.run(fetch)


def test_outage_is_503_with_retry_after() -> None:
    response = get("/locked")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json() == {"detail": "database unavailable, retry later"}


def test_bad_query_is_500_json_not_an_outage() -> None:
    response = get("/bad-query")
    assert response.status_code == 500 and "retry-after" not in response.headers
    assert response.json()["detail"]


def test_validation_details_drop_input_and_escape_surrogates() -> None:
    errors = [{"type": "missing", "loc": ("body", "url"), "msg": "Field required", "input": {"secret": "whsec_x"},
               "ctx": {"x": 1}},
              {"type": "extra_forbidden", "loc": ("body", "\udc00", 0), "msg": "Extra inputs are not permitted",
               "input": "\ud800"}]
    details = validation_details(errors)
    assert details == [{"type": "missing", "loc": ["body", "url"], "msg": "Field required"},
                       {"type": "extra_forbidden", "loc": ["body", "(key)", 0], "msg": "Extra inputs are not permitted"}]


def test_outage_warnings_are_throttled(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """One line per outage burst, then one per interval saying how many were held back."""
    clock = [100.0]
    monkeypatch.setattr(errors.time, "monotonic", lambda: clock[0])
    warn = errors.ThrottledWarning(seconds=5.0)
    with caplog.at_level(logging.WARNING, logger=errors.log.name):
        for _ in range(60):
            warn("database unavailable: %s", "refused")
            clock[0] += 0.125  # 60 failures over 7.5 s (exact in binary)
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["database unavailable: refused",
                     "database unavailable: refused (39 more like it since the last report)"]
