"""Body size limits, tokens created by the CLI, and health checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.service import REPO_ROOT, LiveService


def test_oversized_body_gets_413_and_nothing_is_stored(sqlite_url: str, token: str, tmp_path: Path) -> None:
    service = LiveService(sqlite_url, token, tmp_path / "log", env={"MONITOR_MAX_BODY_BYTES": "20000"}).start()
    try:
        service.json("PUT", "/api/v1/runs/big", json={})
        records = [{"step": s, "epoch": 0, "loss": 1.0} for s in range(2000)]
        response = service.client.post("/api/v1/runs/big/diagnostics", json={"records": records})
        assert response.status_code == 413
        assert "larger than 20000 bytes" in response.json()["detail"]
        small = service.client.post("/api/v1/runs/big/diagnostics", json={"records": records[:10]})
        assert small.status_code == 200
        assert service.json("GET", "/api/v1/runs/big")["record_count"] == 10
    finally:
        service.close()


def test_token_created_by_cli_is_accepted(sqlite_url: str, tmp_path: Path) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "monitor", "token", "create", "--name", "ci", "--database-url", sqlite_url],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True,
    )
    new_token = created.stdout.strip().splitlines()[-1]
    assert new_token.startswith("thm_")
    service = LiveService(sqlite_url, "configured-token", tmp_path / "log").start()
    try:
        ok = httpx.get(f"{service.base_url}/api/v1/runs", headers={"Authorization": f"Bearer {new_token}"})
        assert ok.status_code == 200
        db_file = Path(sqlite_url.removeprefix("sqlite:///"))
        assert new_token.encode() not in db_file.read_bytes()  # only the hash is stored
    finally:
        service.close()


def test_healthz_and_openapi(sqlite_service: LiveService) -> None:
    health = httpx.get(f"{sqlite_service.base_url}/healthz").json()
    assert health["status"] == "ok"
    schema = httpx.get(f"{sqlite_service.base_url}/openapi.json").json()
    assert "/escalation/decision" in schema["paths"]
    assert "/api/v1/runs/{run_id}/diagnostics" in schema["paths"]


def test_migrate_command_is_idempotent(postgres_url: str) -> None:
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "monitor", "migrate", "--database-url", postgres_url],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "head" in done.stdout
