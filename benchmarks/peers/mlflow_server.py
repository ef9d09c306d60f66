"""A real MLflow tracking server (``mlflow server``, SQLite backend) on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"mlflow server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def mlflow_server(workdir: Path, workers: int | None = None, timeout: float = 120) -> Iterator[dict]:
    """Start ``mlflow server --backend-store-uri sqlite:///...``; yields url, pid and db path."""
    db = workdir / "mlflow.db"
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    args = [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{db}",
            "--default-artifact-root", str(workdir / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    if workers:
        args += ["--workers", str(workers)]
    log = workdir / "mlflow-server.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(args, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log, timeout)
        yield {"url": url, "pid": process.pid, "db": db}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
