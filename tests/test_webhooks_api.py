"""Webhook subscription API on the real service: validation, secrets, listing, deletion."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.alerts.outbox import EVENT_TYPES
from tests.support.receiver import Receiver, subscribe
from tests.support.service import LiveService


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """One service (SQLite) for this module: these tests only need the API, not a fresh database."""
    folder = tmp_path_factory.mktemp("webhooks-api")
    live = LiveService(f"sqlite:///{folder / 'monitor.db'}", "test-" + secrets.token_hex(16),
                       folder / "service.log").start()
    try:
        yield live
    finally:
        live.close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """One receiver for the module (the tests here only need somewhere to point at)."""
    with Receiver() as live:
        yield live


def test_create_returns_a_generated_secret_once(api: LiveService, receiver: Receiver) -> None:
    created = subscribe(api, receiver.url)
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 24
    assert created["events"] == list(EVENT_TYPES) and created["format"] == "standard"
    assert created["run_id"] is None and created["active"] is True
    listed = [hook for hook in api.json("GET", "/api/v1/webhooks") if hook["id"] == created["id"]]
    one = api.json("GET", f"/api/v1/webhooks/{created['id']}")
    assert len(listed) == 1
    for shown in (listed[0], one):
        assert "secret" not in shown and created["secret"] not in str(shown)
    assert created["secret"].removeprefix("whsec_") not in api.log_tail(10**7)


def test_caller_secret_events_format_and_run_filter(api: LiveService, receiver: Receiver) -> None:
    raw = base64.b64encode(bytes(range(32))).decode()
    api.client.put("/api/v1/runs/run-7", json={"config": {}}).raise_for_status()
    created = subscribe(api, receiver.url, secret=raw, events=["decision.pause", "decision.pause"],
                        format="slack", run_id="run-7")
    assert created["secret"] == "whsec_" + raw
    assert (created["events"], created["format"], created["run_id"]) == (["decision.pause"], "slack", "run-7")


@pytest.mark.parametrize("url", [
    "ftp://example.com/hook", "javascript:alert(1)", "http://", "not a url", "http://user:pw@example.com/",
    "http://example.com:0/", "https://example.com/" + "x" * 2100,
])
def test_invalid_urls_get_422(api: LiveService, url: str) -> None:
    before = api.json("GET", "/api/v1/webhooks")
    response = api.client.post("/api/v1/webhooks", json={"url": url})
    assert response.status_code == 422, response.text
    assert "detail" in response.json()
    assert api.json("GET", "/api/v1/webhooks") == before


@pytest.mark.parametrize("body", [
    {"events": []}, {"events": ["rule.exploded"]}, {"format": "teams"}, {"run_id": "bad run id!"},
    {"secret": "whsec_tooshort"}, {"secret": "not base64 at all!!"}, {"surprise": 1},
])
def test_invalid_fields_get_422(api: LiveService, receiver: Receiver, body: dict) -> None:
    response = api.client.post("/api/v1/webhooks", json={"url": receiver.url, **body})
    assert response.status_code == 422, response.text
    if "secret" in body:
        assert body["secret"] not in response.text  # a rejected secret is not echoed either


def test_webhook_for_an_unknown_run_is_404_and_not_stored(api: LiveService, receiver: Receiver) -> None:
    before = api.json("GET", "/api/v1/webhooks")
    response = api.client.post("/api/v1/webhooks", json={"url": receiver.url, "run_id": "no-such-run"})
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"detail": "run 'no-such-run' not found"}
    assert api.json("GET", "/api/v1/webhooks") == before
    api.client.put("/api/v1/runs/known-run", json={"config": {}}).raise_for_status()
    assert subscribe(api, receiver.url, run_id="known-run")["run_id"] == "known-run"


def test_delete_and_unknown_ids(api: LiveService, receiver: Receiver) -> None:
    created = subscribe(api, receiver.url)
    path = f"/api/v1/webhooks/{created['id']}"
    assert api.client.delete(path).status_code == 204
    assert api.client.get(path).status_code == 404
    assert api.client.delete(path).status_code == 404
    assert api.client.get(f"{path}/deliveries").status_code == 404
    assert api.client.get("/api/v1/webhooks/0").status_code == 422
    assert api.client.post("/api/v1/deliveries/12345/retry").status_code == 404
    assert api.client.get("/api/v1/deliveries", params={"status": "lost"}).status_code == 422
    assert isinstance(api.json("GET", "/api/v1/deliveries", params={"status": "failed"}), list)


def test_every_route_needs_a_token(api: LiveService, receiver: Receiver) -> None:
    anonymous = httpx.Client(base_url=api.base_url, timeout=10)
    with anonymous:
        for method, path in [("POST", "/api/v1/webhooks"), ("GET", "/api/v1/webhooks"), ("GET", "/api/v1/webhooks/1"),
                             ("DELETE", "/api/v1/webhooks/1"), ("GET", "/api/v1/webhooks/1/deliveries"),
                             ("GET", "/api/v1/deliveries"), ("POST", "/api/v1/deliveries/1/retry")]:
            response = anonymous.request(method, path, json={"url": receiver.url})
            assert response.status_code == 401, (method, path, response.status_code)


def test_private_addresses_refused_when_not_allowed(sqlite_url: str, token: str, tmp_path: Path) -> None:
    hardened = LiveService(sqlite_url, token, tmp_path / "hardened.log",
                           env={"MONITOR_WEBHOOK_ALLOW_PRIVATE": "false"}).start()
    try:
        for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest",
                    "http://10.0.0.1/x", "http://[::127.0.0.1]/x", "http://[::ffff:7f00:1]/x",
                    "http://[64:ff9b::a9fe:a9fe]/latest", "http://[2002:a9fe:a9fe::]/x"):
            response = hardened.client.post("/api/v1/webhooks", json={"url": url})
            assert response.status_code == 422 and "private" in response.text, (url, response.text)
    finally:
        hardened.close()
