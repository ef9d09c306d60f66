"""Shared fixtures: a real service on SQLite and on PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import create_database, drop_database
from tests.support.receiver import Receiver
from tests.support.service import LiveService


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}"
        return
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'monitor.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def token() -> str:
    return "test-" + secrets.token_hex(16)


@pytest.fixture
def service(database_url: str, token: str, tmp_path: Path) -> Iterator[LiveService]:
    """The real service (uvicorn subprocess) on a free loopback port, on both databases."""
    live = LiveService(database_url, token, tmp_path / "service.log").start()
    try:
        yield live
    finally:
        live.close()


@pytest.fixture
def sqlite_service(sqlite_url: str, token: str, tmp_path: Path) -> Iterator[LiveService]:
    """The real service on SQLite only (for tests where the database kind does not matter)."""
    live = LiveService(sqlite_url, token, tmp_path / "service.log").start()
    try:
        yield live
    finally:
        live.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver (HTTP server) on a free loopback port."""
    with Receiver() as live:
        yield live
