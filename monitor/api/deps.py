"""FastAPI dependencies: database, settings and the bearer-token check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from monitor.auth import TokenVerifier
from monitor.settings import Settings
from monitor.store.database import Database

TOKEN_COOKIE = "monitor_token"
UNAUTHORIZED_DETAIL = "missing or invalid bearer token"
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


async def get_db(request: Request) -> Database:
    """The process's database (``async``: FastAPI runs plain ``def`` dependencies in a worker thread)."""
    return request.app.state.db


async def get_app_settings(request: Request) -> Settings:
    """The process's settings (``async`` for the same reason as ``get_db``)."""
    return request.app.state.settings


def presented_token(request: HTTPConnection) -> str | None:
    """The bearer token from the Authorization header, else from the dashboard cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE)


async def token_is_valid(verifier: TokenVerifier, token: str | None) -> bool:
    """Check on the event loop when the hashes are cached; refresh them in a worker thread."""
    verdict = verifier.cached_verdict(token)
    if verdict is None:
        verdict = await run_in_threadpool(verifier.is_valid, token)
    return verdict


async def require_token(request: Request) -> None:
    """401 unless a known token is presented."""
    verifier: TokenVerifier = request.app.state.verifier
    if not await token_is_valid(verifier, presented_token(request)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=UNAUTHORIZED_DETAIL,
            headers=UNAUTHORIZED_HEADERS,
        )


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
