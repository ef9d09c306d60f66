"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from monitor import __version__
from monitor.api.deps import DbDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(db: DbDep) -> JSONResponse:
    """200 when the database answers, 503 otherwise (no auth: load balancers call it)."""
    try:
        with db.read_session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return JSONResponse(status_code=503, content={"status": "unavailable", "detail": str(exc)[:200]})
    return JSONResponse({"status": "ok", "version": __version__, "database": db.engine.dialect.name})
