"""FastAPI dependencies: database, settings and the bearer-token check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import HTTPConnection

from monitor.auth import TokenVerifier
from monitor.settings import Settings
from monitor.store.database import Database

TOKEN_COOKIE = "monitor_token"
UNAUTHORIZED_DETAIL = "missing or invalid bearer token"
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


def get_db(request: Request) -> Database:
    """The process's database."""
    return request.app.state.db


def get_app_settings(request: Request) -> Settings:
    """The process's settings."""
    return request.app.state.settings


def presented_token(request: HTTPConnection) -> str | None:
    """The bearer token from the Authorization header, else from the dashboard cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(TOKEN_COOKIE)


def require_token(request: Request) -> None:
    """401 unless a known token is presented."""
    verifier: TokenVerifier = request.app.state.verifier
    if not verifier.is_valid(presented_token(request)):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=UNAUTHORIZED_DETAIL,
            headers=UNAUTHORIZED_HEADERS,
        )


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
