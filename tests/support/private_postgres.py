"""A private, throw-away PostgreSQL cluster that a test may stop and start at will.

Why not the shared server on 5432: restarting it breaks every other test running on
the machine at that moment. This cluster lives in its own temp directory, listens on
its own loopback port, and belongs to the one test that made it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support.service import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
PG_USER = "postgres"


def find_pg_bin() -> Path | None:
    """The newest installed server's bin directory (with initdb and pg_ctl), if any."""
    for directory in PG_BIN_DIRS:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def unavailable_reason() -> str | None:
    """Why a private cluster cannot be made here (tests skip with this), or None."""
    if find_pg_bin() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "a private cluster needs root (to run initdb as the postgres user)"
    return None


class PrivatePostgres:
    """``initdb`` into a temp dir, ``pg_ctl start/stop`` on a free port; ``destroy()`` removes it all."""

    def __init__(self) -> None:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL")
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="thm-private-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        shutil.chown(self.root, PG_USER, PG_USER)
        os.chmod(self.root, 0o700)

    def _as_postgres(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a server binary as the postgres user (initdb and the server refuse root)."""
        command = ["runuser", "-u", PG_USER, "--", str(self.bin_dir / args[0]), *args[1:]]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def init(self) -> PrivatePostgres:
        """Create the cluster (trust auth on loopback only, no unix socket outside our dir)."""
        done = self._as_postgres("initdb", "-D", str(self.data_dir), "-U", PG_USER, "-A", "trust",
                                 "--no-instructions", "-E", "UTF8")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        return self

    def start(self, timeout: float = 60) -> None:
        """Start and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        done = self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                                 "-t", str(int(timeout)), "-o", options, "start", timeout=timeout + 10)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-2000:]}\n{self.log_tail()}")
        self._wait_connectable(timeout)

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects sessions cleanly; ``immediate`` is a crash (recovery on next start)."""
        self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_seconds: float, mode: str = "fast") -> None:
        """Stop, stay down for a while (clients see the outage), start again."""
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of a database in this cluster."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new database; returns its SQLAlchemy URL."""
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _dsn(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _wait_connectable(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop (immediately) and delete everything."""
        if self.data_dir.exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
