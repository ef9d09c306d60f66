"""Any exception nothing handled is a JSON 500 ``{"detail": "internal error"}``, never plain text."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from monitor.app import create_app
from monitor.settings import Settings

TOKEN = "test-internal-errors-token"


class Surprise(RuntimeError):
    """An exception no handler knows."""


def _get(tmp_path: Path, path: str) -> httpx.Response:
    """One in-process request to the real application with a route that fails."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'monitor.db'}", api_token=TOKEN))

    def explode() -> None:
        raise Surprise("secret internals: /etc/monitor.conf")

    async def explode_async() -> None:
        raise KeyError("x")

    app.add_api_route("/api/v1/explode", explode)
    app.add_api_route("/api/v1/explode-async", explode_async)

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})

    return anyio.run(fetch)


@pytest.mark.parametrize("path", ["/api/v1/explode", "/api/v1/explode-async"])
def test_unhandled_exception_is_json_500(tmp_path: Path, path: str) -> None:
    response = _get(tmp_path, path)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "internal error"}
    assert "secret internals" not in response.text
