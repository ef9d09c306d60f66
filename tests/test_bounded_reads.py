"""What one read may ask is bounded (issue 16.6): behaviour only, no timing.

Too many metrics: 422; an over-long query string: 414; raw records come in pages that
cover every row exactly once; heavy reads run in a bounded number of slots, a read that
waits too long gets 503 with Retry-After, and a slot comes back after an error or after
the client went away. Latency under heavy reads is measured in benchmarks/heavy_read.py.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Request

from monitor.api.errors import install_error_handlers
from monitor.api.read_slots import run_read
from monitor.settings import Settings
from monitor.store.runs import RunNotFound
from tests.support.postgres import create_database, drop_database
from tests.support.reliability import wait_until
from tests.support.service import LiveService

PAGE = 7
RANKS = 3
STEPS = 40


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """A service with small bounds, and one run of ``RANKS`` x ``STEPS`` records posted out of order."""
    folder = tmp_path_factory.mktemp(f"reads-{request.param}")
    url = f"sqlite:///{folder / 'monitor.db'}" if request.param == "sqlite" else create_database()
    env = {"MONITOR_SERIES_MAX_METRICS": "4", "MONITOR_MAX_QUERY_BYTES": "1024",
           "MONITOR_MAX_RECORDS_PER_PAGE": str(PAGE)}
    service = LiveService(url, "reads-" + secrets.token_hex(12), folder / "service.log", env=env).start()
    try:
        service.client.put("/api/v1/runs/paged", json={}).raise_for_status()
        records = [{"step": step, "epoch": 0, "rank": rank, "loss": step + rank / 10}
                   for step in reversed(range(STEPS)) for rank in range(RANKS)]
        service.client.post("/api/v1/runs/paged/diagnostics", json={"records": records}).raise_for_status()
        yield service
    finally:
        service.close()
        if request.param == "postgres":
            drop_database(url)


def assert_422_at(response: httpx.Response, loc: list[Any]) -> None:
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [loc]


def test_more_metrics_than_the_bound_is_422(api: LiveService) -> None:
    five = ",".join(f"extra.m{i}" for i in range(5))
    assert_422_at(api.client.get("/api/v1/runs/paged/series", params={"metrics": five}), ["query", "metrics"])
    assert_422_at(api.client.get("/runs/paged/data", params={"metrics": five}), ["query", "metrics"])
    four = ",".join(f"extra.m{i}" for i in range(4))
    assert api.client.get("/api/v1/runs/paged/series", params={"metrics": four}).status_code == 200
    repeated = ",".join(["loss"] * 50)  # the same name many times is one metric
    assert api.client.get("/api/v1/runs/paged/series", params={"metrics": repeated}).status_code == 200


def test_query_string_over_the_bound_is_414(api: LiveService) -> None:
    long = "loss," * 300
    response = api.client.get("/api/v1/runs/paged/series", params={"metrics": long})
    assert response.status_code == 414 and "1024 bytes" in response.json()["detail"]
    response = api.client.get("/escalation/decision", params={"run_id": "paged", "pad": "x" * 2000})
    assert response.status_code == 414
    assert api.client.get("/escalation/decision", params={"run_id": "paged"}).status_code == 200


def pages(api: LiveService, **params: Any) -> list[dict[str, Any]]:
    """Follow ``next_cursor`` to the end; every page holds at most the bound."""
    records, cursor, seen = [], None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = api.json("GET", "/api/v1/runs/paged/diagnostics", params=query)
        assert len(body["records"]) <= params.get("limit", PAGE)
        records += body["records"]
        cursor, seen = body["next_cursor"], seen + 1
        if cursor is None:
            return records
        assert seen < 1000, "paging does not end"


def test_paging_covers_every_row_exactly_once(api: LiveService) -> None:
    everything = [(r["step"], r["rank"]) for r in pages(api)]
    assert everything == [(step, rank) for step in range(STEPS) for rank in range(RANKS)]
    assert [(r["step"], r["rank"]) for r in pages(api, limit=5)] == everything
    one_rank = [(r["step"], r["rank"]) for r in pages(api, rank=1, step_min=3, step_max=30)]
    assert one_rank == [(step, 1) for step in range(3, 31)]
    exact = api.json("GET", "/api/v1/runs/paged/diagnostics", params={"step_min": 0, "step_max": 1, "rank": 0})
    assert len(exact["records"]) == 2 and exact["next_cursor"] is None


def test_pages_larger_than_the_bound_or_bad_cursors_are_422(api: LiveService) -> None:
    diagnostics = "/api/v1/runs/paged/diagnostics"
    assert_422_at(api.client.get(diagnostics, params={"limit": PAGE + 1}), ["query", "limit"])
    for cursor in ("abc", "1", "1.2", "1.2.3.4", "-1.0.0", "99999999999999999999.0.0", "5.99999.0"):
        assert api.client.get(diagnostics, params={"cursor": cursor}).status_code == 422, cursor


# Read slots, in process: a read blocks on an event, so "busy" is a state, not a race.

class Gate:
    """Work for ``run_read`` that holds its slot until ``release`` (or raises when told)."""

    def __init__(self) -> None:
        self.started, self.go = threading.Event(), threading.Event()

    def __call__(self, fail: bool) -> dict[str, str]:
        self.started.set()
        assert self.go.wait(60), "the test never released the read"
        if fail:
            raise RunNotFound("no-such-run")
        return {"ok": "yes"}


def slot_app(gate: Gate) -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings(database_url="sqlite:///:memory:", read_concurrency=1, read_wait_seconds=0)
    install_error_handlers(app)

    @app.get("/read")
    async def read(request: Request, fail: bool = False) -> dict[str, str]:
        return await run_read(request, gate, fail)

    return app


def test_a_read_past_the_slots_is_503_and_slots_come_back_after_errors_and_disconnects() -> None:
    gate = Gate()
    app = slot_app(gate)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client, \
                anyio.create_task_group() as tasks:
            answers: list[httpx.Response] = []

            async def hold(path: str) -> None:
                answers.append(await client.get(path))

            tasks.start_soon(hold, "/read?fail=true")
            await anyio.to_thread.run_sync(gate.started.wait, 60)
            busy = await client.get("/read")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
            assert "retry" in busy.json()["detail"]
            gate.go.set()
            await anyio.to_thread.run_sync(wait_until, lambda: len(answers) == 1)
            assert answers[0].status_code == 404  # the error answered...
            assert (await client.get("/read")).status_code == 200  # ...and gave its slot back

            gate.go.clear()
            gate.started.clear()
            vanished = anyio.CancelScope()

            async def hold_then_vanish() -> None:
                with vanished:  # the client goes away mid-read: the request is cancelled
                    await client.get("/read")

            tasks.start_soon(hold_then_vanish)
            await anyio.to_thread.run_sync(gate.started.wait, 60)
            vanished.cancel()
            assert (await client.get("/read")).status_code == 503  # the abandoned read still runs
            gate.go.set()

            async def free() -> bool:
                return (await client.get("/read")).status_code == 200

            for _ in range(600):
                if await free():
                    break
                await anyio.sleep(0.1)
            else:
                raise AssertionError("the slot of a read whose client went away never came back")

    anyio.run(scenario)
