"""Schemathesis against the OpenAPI schema of the real running service, on SQLite and PostgreSQL.

Every operation gets generated valid (positive) and invalid (negative) requests,
both with generated path parameters (mostly unknown runs) and with the id of a
run that has data, so handlers past the 404 are reached too. Nothing may answer
5xx; every 4xx must be JSON with a ``detail``. Examples are bounded per operation
and derandomised, so CI is reproducible; ``THM_FUZZ_RANDOM=1`` explores new inputs.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from monitor.app import create_app
from monitor.settings import Settings
from tests.support.postgres import create_database, drop_database
from tests.support.reliability import fire_collapse
from tests.support.service import LiveService

MAX_EXAMPLES = int(os.environ.get("THM_FUZZ_EXAMPLES", "30"))
RANDOM = os.environ.get("THM_FUZZ_RANDOM") == "1"
KNOWN_RUN = "fuzz-run"
# Open bugs the fuzzer finds (see docs/reliability.md), keyed (kind, method, path) -> reason; remove an entry
# once its fix lands. None open now.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}
# What the derandomised CI run hits today; with THM_FUZZ_RANDOM=1 any entry of KNOWN_BUGS may show up.
HIT_IN_CI: set[tuple[str, str, str, str]] = set()
OPERATIONS = [(method.upper(), path) for path, methods in
              create_app(Settings(database_url="sqlite:///:memory:")).openapi()["paths"].items() for method in methods]


@dataclass
class FuzzTarget:
    """A live service, its schema as loaded over HTTP, and ids of things that exist in it."""

    service: LiveService
    schema: Any
    known: dict[str, Any]
    kind: str


def _seed(service: LiveService) -> dict[str, Any]:
    """A run with records, fired rules and an epoch; a webhook with a delivery; returns their ids."""
    fire_collapse(service.client, KNOWN_RUN)
    service.client.post(f"/api/v1/runs/{KNOWN_RUN}/epochs", json={"epoch": 0, "eval_accuracy": 0.5})
    hook = service.client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}).json()
    return {"run_id": KNOWN_RUN, "webhook_id": hook["id"], "delivery_id": 1}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    folder = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    url = f"sqlite:///{folder / 'monitor.db'}" if request.param == "sqlite" else create_database()
    # Deliveries to the fake hook fail fast and are given up quickly: the fuzzer does not wait on them.
    service = LiveService(url, "fuzz-" + secrets.token_hex(12), folder / "service.log",
                          env={"MONITOR_WEBHOOK_MAX_ATTEMPTS": "1", "MONITOR_WEBHOOK_TIMEOUT_SECONDS": "0.5"}).start()
    try:
        known = _seed(service)
        schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
        schema.config.update(headers=service.auth_headers)
        yield FuzzTarget(service, schema, known, request.param)
    finally:
        service.close()
        if request.param == "postgres":
            drop_database(url)


def last_traceback(log: str) -> str:
    """The service log's last traceback (what a 500 left behind)."""
    start = log.rfind("Traceback (most recent call last)")
    return log[start:][-3000:] if start >= 0 else log[-1500:]


def check_response(target: FuzzTarget, case: Any, response: Any) -> None:
    """No 5xx; 4xx answers are JSON objects with a ``detail``."""
    request = case.as_curl_command(headers={"Authorization": "Bearer <token>"})
    if response.status_code >= 500:
        pytest.fail(f"[{target.kind}] {response.status_code} for\n{request}\n{response.text[:500]}\n"
                    f"service log:\n{last_traceback(target.service.log_tail(200_000))}")
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            pytest.fail(f"[{target.kind}] non-JSON {response.status_code} for\n{request}\n{response.text[:300]}")
        assert isinstance(body, dict) and body.get("detail"), (request, response.status_code, body)


def run_strategy(target: FuzzTarget, strategy: Any) -> None:
    """Drive one strategy for the bounded number of examples."""

    @given(case=strategy)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def fuzz(case: Any) -> None:
        try:
            response = case.call(headers=target.service.auth_headers, timeout=30)
        except Exception as exc:  # noqa: BLE001 - a dropped connection is the server failing too
            pytest.fail(f"[{target.kind}] no answer ({exc!r}) for {case.as_curl_command()}\n"
                        f"{last_traceback(target.service.log_tail(200_000))}")
        check_response(target, case, response)

    try:
        fuzz()
    except Unsatisfiable:
        pass  # e.g. negative mode for an operation whose only input is a fixed path parameter: nothing to negate


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_error_and_json_detail_on_4xx(target: FuzzTarget, method: str, path: str,
                                                 mode: GenerationMode, request: pytest.FixtureRequest) -> None:
    known_bug = KNOWN_BUGS.get((target.kind, method, path))
    if known_bug and (RANDOM or (target.kind, method, path, mode.value) in HIT_IN_CI):
        request.applymarker(pytest.mark.xfail(reason=known_bug, strict=False))
    operation = target.schema[path][method]
    run_strategy(target, operation.as_strategy(generation_mode=mode))
    names = re.findall(r"\{(\w+)\}", path)
    if names:  # again against things that exist, so the handler body runs
        fixed = {name: target.known[name] for name in names}
        run_strategy(target, operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    health = httpx.get(f"{target.service.base_url}/healthz", timeout=10)
    assert health.status_code == 200, "the service is no longer healthy after fuzzing"
