"""The decision poll answered ahead of routing (``monitor.api.decision_poll``).

The middleware runs over the real application (its verifier, its database); the only
stand-in is the "rest of the app" it hands over to, which records whether it was asked.
What the live service answers through both ways is checked end to end as well.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from monitor.api.decision_poll import DecisionPoll, single_run_id
from monitor.app import create_app
from monitor.evaluation import refresh_decision
from monitor.settings import Settings
from monitor.store.database import Database
from monitor.store.migrate import upgrade
from monitor.store.runs import create_or_get_run
from tests.support.service import LiveService

TOKEN = "test-poll-token"


@pytest.mark.parametrize(("query", "expected"), [
    (b"run_id=r-1", "r-1"),
    (b"run_id=a.b%3Ac", "a.b:c"),
    (b"", None),
    (b"run_id=", None),
    (b"run_id=r&run_id=s", None),
    (b"run_id=r&extra=1", None),
    (b"run_id=%20bad", None),
    (b"run_id=" + b"x" * 201, None),
    (b"run_id=\xff", None),
    (b"other=r", None),
])
def test_only_a_single_valid_run_id_is_taken(query: bytes, expected: str | None) -> None:
    assert single_run_id(query) == expected


class RestOfApp:
    """Where the middleware hands over; records the requests it was given."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(f"{scope['path']}?{scope['query_string'].decode()}")
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _poll(app: Any, query: bytes, token: str | None = TOKEN, method: str = "GET",
          path: str = "/escalation/decision") -> tuple[int, bytes, RestOfApp]:
    rest = RestOfApp()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers,
             "app": app}
    asyncio.run(DecisionPoll(rest)(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), rest


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """The real application on a migrated SQLite file holding run ``known``."""
    url = f"sqlite:///{tmp_path / 'poll.db'}"
    upgrade(url)
    application = create_app(Settings(database_url=url, api_token=TOKEN))
    db: Database = application.state.db
    with db.write_session() as session:
        run, _ = create_or_get_run(session, "known", name=None, project=None, config=None,
                                   escalation_start_epoch=None)
        refresh_decision(session, run, "http://localhost")
    assert application.state.verifier.is_valid(TOKEN)  # fills the verifier's cache, as the first request would
    yield application
    db.dispose()


def test_a_good_poll_is_answered_without_the_rest_of_the_app(app: Any) -> None:
    status, body, rest = _poll(app, b"run_id=known")
    assert status == 200 and rest.paths == []
    assert b'"decision":"continue"' in body and b'"run_id":"known"' in body


@pytest.mark.parametrize(("query", "token", "method", "path"), [
    (b"run_id=unknown", TOKEN, "GET", "/escalation/decision"),  # 404 is the route's
    (b"run_id=known", None, "GET", "/escalation/decision"),  # 401 is the token gate's
    (b"run_id=known", "wrong", "GET", "/escalation/decision"),
    (b"run_id=bad%20id", TOKEN, "GET", "/escalation/decision"),  # 422 is the route's
    (b"run_id=known&verbose=1", TOKEN, "GET", "/escalation/decision"),
    (b"run_id=known", TOKEN, "POST", "/escalation/decision"),  # 405
    (b"run_id=known", TOKEN, "GET", "/escalation/decision/"),
])
def test_everything_else_goes_on_to_the_app(app: Any, query: bytes, token: str | None, method: str,
                                            path: str) -> None:
    status, _, rest = _poll(app, query, token, method, path)
    assert status == 599 and rest.paths == [f"{path}?{query.decode()}"]


def test_live_answers_and_errors_through_both_ways(sqlite_service: LiveService) -> None:
    service = sqlite_service
    service.json("PUT", "/api/v1/runs/live", json={"config": {}})
    fast = service.client.get("/escalation/decision", params={"run_id": "live"})
    routed = service.client.get("/escalation/decision", params={"run_id": "live", "unused": "1"})
    assert fast.status_code == routed.status_code == 200
    assert fast.text == routed.text and fast.headers["content-type"] == "application/json"
    assert int(fast.headers["content-length"]) == len(fast.content)
    assert service.client.get("/escalation/decision", params={"run_id": "nope"}).status_code == 404
    assert service.client.get("/escalation/decision", params={"run_id": "bad id"}).status_code == 422
    assert service.client.get("/escalation/decision").status_code == 422
    anonymous = service.client.get("/escalation/decision", params={"run_id": "live"},
                                   headers={"Authorization": "Bearer wrong"})
    assert anonymous.status_code == 401 and "live" not in anonymous.text
