"""Our service as a subprocess on a scratch database (SQLite file or a fresh PostgreSQL database)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.placement import pinned_to
from tests.support.postgres import create_database, drop_database, ensure_postgres_running
from tests.support.service import LiveService, free_port

__all__ = ["LiveService", "free_port", "postgres_available", "scratch_database", "running_service"]


def postgres_available() -> bool:
    """Whether the local PostgreSQL answers (or can be started)."""
    try:
        ensure_postgres_running()
        return True
    except Exception:  # noqa: BLE001 - any failure just means "skip the PostgreSQL rows"
        return False


@contextmanager
def scratch_database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh empty database URL of ``kind`` ("sqlite" or "postgres"), dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'monitor-{secrets.token_hex(4)}.db'}"
        return
    url = create_database("monitor_bench")
    try:
        yield url
    finally:
        drop_database(url)


@contextmanager
def running_service(database_url: str, workdir: Path, workers: int = 1,
                    cpus: frozenset[int] | None = None, env: dict[str, str] | None = None) -> Iterator[LiveService]:
    """``python -m monitor serve`` on a free loopback port with a random API token (on ``cpus``, if given)."""
    token = "bench-" + secrets.token_hex(16)
    live = LiveService(database_url, token, workdir / f"service-{secrets.token_hex(3)}.log", workers=workers,
                       preexec=pinned_to(cpus), env=env)
    live.start(timeout=120)
    try:
        yield live
    finally:
        live.close()
