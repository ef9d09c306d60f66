"""A real PostgreSQL for tests: started if down, a fresh database per test session."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import psycopg

ADMIN_DSN = os.environ.get("MONITOR_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


def _can_connect() -> bool:
    try:
        with psycopg.connect(ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def ensure_postgres_running() -> None:
    """Connect, or start the local cluster; fail with a clear message if neither works."""
    if _can_connect():
        return
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*")) if Path("/etc/postgresql").exists() else []
    if versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
            check=False, capture_output=True, timeout=60,
        )
        for _ in range(30):
            if _can_connect():
                return
            time.sleep(1)
    raise RuntimeError(
        f"PostgreSQL is not reachable at {ADMIN_DSN} and could not be started; start it with "
        "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
        "or point MONITOR_TEST_PG_ADMIN at a server"
    )


def create_database(prefix: str = "monitor_test") -> str:
    """A new empty database; returns its SQLAlchemy URL."""
    ensure_postgres_running()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database` (terminating leftover sessions)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
