"""Start the real service (``python -m monitor serve``) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveService:
    """A monitor process; ``client`` talks to it with a valid token."""

    def __init__(self, database_url: str, token: str, log_path: Path, env: dict[str, str] | None = None,
                 port: int | None = None, workers: int = 1,
                 preexec: Callable[[], None] | None = None) -> None:
        self.database_url = database_url
        self.token = token
        self.log_path = log_path
        self.extra_env = env or {}
        self.port = port or free_port()
        self.workers = workers
        self.preexec = preexec  # run in the child before exec (benchmarks pin it to CPUs)
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base_url, headers=self.auth_headers, timeout=30)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout: float = 60) -> "LiveService":
        """Launch and wait until /healthz answers 200."""
        env = {**os.environ, "MONITOR_API_TOKEN": self.token, "MONITOR_PUBLIC_URL": self.base_url,
               "PYTHONUNBUFFERED": "1", **self.extra_env}
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--database-url", self.database_url, "--workers", str(self.workers)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=self.preexec,
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"service not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop the whole process group (uvicorn workers included)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def kill(self) -> None:
        """SIGKILL: no graceful anything."""
        self.stop(signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        self.client.close()

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Request and return JSON, raising on an error status."""
        response = self.client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()
