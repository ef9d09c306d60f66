"""Map domain errors to JSON ``{"detail": ...}`` answers with the right status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from monitor.store.runs import RunNotFound

log = logging.getLogger(__name__)


class InvalidConfig(ValueError):
    """A run config whose thresholds cannot be used (422)."""


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(RunNotFound)
    async def _run_not_found(_request: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(InvalidConfig)
    async def _invalid_config(_request: Request, exc: InvalidConfig) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": f"invalid run config: {exc}"})

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return JSONResponse(status_code=503, content={"detail": "database unavailable, retry later"},
                            headers={"Retry-After": "1"})
