"""Every 422 of every route is a list of ``{type, loc, msg}`` and never repeats the client's input.

Routes are enumerated from the application (as in ``tests/test_security.py``), so a route
added later is covered. Each gets bad path values, each of its query parameters bad in turn,
and (for POST/PUT) bodies full of a ``<script>`` marker; the marker must not come back in
any 422, neither in ``msg`` nor in ``loc``, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from monitor.app import create_app
from monitor.settings import Settings
from tests.support.postgres import create_database, drop_database
from tests.support.reliability import fire_collapse
from tests.support.service import LiveService
from tests.test_security import PUBLIC, app_routes, fill

MARKER = "<script>alert(1)</script>"
PATH_MARKER = "<script>alert(1)"  # no slash: it must stay one path segment
RUN_ID = "shape-run"
BAD_BODIES: list[Any] = [
    {MARKER: MARKER},
    {"records": [{"step": MARKER, "epoch": 0, MARKER: 1, "extra": {MARKER: MARKER}}]},
    {"records": [{"step": 1, "epoch": 0, "extra": {MARKER: 1.0}}]},
    {"records": MARKER},
    {"config": {"monitor": {MARKER: MARKER}}},
    {"config": {"monitor": {"severity": {MARKER: MARKER}}}},
    {"config": {"monitor": {"severity": {MARKER: "pause"}}}},
    {"config": {"hyper_lora": {"lora_max_norm": MARKER}}},
    {"config": {MARKER: "\x00" + MARKER}},
    {"name": "\x00" + MARKER, "project": MARKER},
    {"url": f"http://host:{MARKER}/hook"},
    {"url": f"http://{MARKER}/hook", "secret": MARKER},
    {"url": "http://127.0.0.1:9/hook", "events": [MARKER], "format": MARKER, "run_id": MARKER},
    {"epoch": MARKER, "eval_accuracy": MARKER},
    [MARKER],
    MARKER,
]


def query_params(path: str, method: str) -> list[str]:
    """The query parameters the application declares for ``method path``."""
    schema = create_app(Settings(database_url="sqlite:///:memory:")).openapi()["paths"]
    operation = schema.get(path, {}).get(method.lower(), {})
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]


def bad_requests(method: str, path: str) -> Iterator[dict[str, Any]]:
    """Requests that should each be refused (many with 422)."""
    good = fill(path).replace("sec-run", RUN_ID)
    if "{" in path:
        yield {"url": path.replace("{run_id}", PATH_MARKER).replace("{webhook_id}", PATH_MARKER)
               .replace("{delivery_id}", PATH_MARKER).replace("{name}", PATH_MARKER)}
    for name in query_params(path, method):
        yield {"url": good, "params": {name: MARKER}}
        yield {"url": good, "params": {name: "-1"}}
    if path.endswith("/series") or path.endswith("/data"):
        yield {"url": good, "params": {"metrics": f"loss,extra.{MARKER},{MARKER}"}}
        yield {"url": good, "params": {"step_min": "5", "step_max": "3"}}
    if method in ("POST", "PUT"):
        for body in BAD_BODIES:
            yield {"url": good, "json": body}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    folder = tmp_path_factory.mktemp(f"shape-{request.param}")
    url = f"sqlite:///{folder / 'monitor.db'}" if request.param == "sqlite" else create_database()
    service = LiveService(url, "shape-" + secrets.token_hex(12), folder / "service.log",
                          env={"MONITOR_WEBHOOK_ALLOW_PRIVATE": "false"}).start()
    try:
        fire_collapse(service.client, RUN_ID)
        yield service
    finally:
        service.close()
        if request.param == "postgres":
            drop_database(url)


def assert_documented_422(response: httpx.Response, where: str) -> None:
    """``detail`` is a list of exactly {type, loc, msg}, and no part of the marker comes back."""
    body = response.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], list) and body["detail"], where
    for error in body["detail"]:
        assert set(error) == {"type", "loc", "msg"}, (where, error)
        assert isinstance(error["type"], str) and isinstance(error["msg"], str), (where, error)
        assert isinstance(error["loc"], list), (where, error)
    for fragment in ("<script", "alert(1)", "\\u003cscript"):
        assert fragment not in response.text, f"{where} echoed input: {response.text[:400]}"


def test_every_422_has_the_documented_shape_and_echoes_nothing(api: LiveService) -> None:
    seen = 0
    for method, path in app_routes():
        if path in PUBLIC and path not in ("/static/{name}",):
            continue
        for request in bad_requests(method, path):
            url = request.pop("url")
            target = url if url.startswith("http") else api.base_url + (url if "{" not in url else fill(url))
            response = httpx.request(method, target, headers=api.auth_headers, follow_redirects=False,
                                     timeout=30, **request)
            where = f"{method} {path} {request}"
            assert response.status_code != 500, f"{where}: {response.text[:300]}"
            if response.status_code == 422:
                assert_documented_422(response, where)
                seen += 1
    assert seen >= 60, f"only {seen} answers were 422: the bad requests no longer reach validation"
