"""Integers in answers (16.9): what is exact where, as docs/reliability.md documents.

Run configs refuse integers beyond +-(2^53-1) (tests/test_config_bounds.py). Steps and
epochs go up to 2^62 and come back exact in the JSON text; a JavaScript client must read
those above 2^53-1 as BigInt (a plain ``JSON.parse`` would round them).
"""

from __future__ import annotations

import json

from pathlib import Path

import httpx

from tests.support.service import LiveService

BEYOND_DOUBLE = [2**53 + 1, 2**62 - 1]  # neither is a double: a double-based reader would change them


def test_steps_beyond_2_to_53_come_back_exact_in_the_json_text(database_url: str, token: str, tmp_path: Path) -> None:
    # Such steps are a jump over MONITOR_MAX_STEP_JUMP by default (docs/steps.md): lift the limit here.
    service = LiveService(database_url, token, tmp_path / "service.log",
                          env={"MONITOR_MAX_STEP_JUMP": str(2**62)}).start()
    try:
        _check_exact_steps(service.client)
    finally:
        service.close()


def _check_exact_steps(client: httpx.Client) -> None:
    assert client.put("/api/v1/runs/huge", json={}).status_code == 201
    records = [{"step": step, "epoch": step, "loss": 1.0} for step in BEYOND_DOUBLE]
    answer = client.post("/api/v1/runs/huge/diagnostics", json={"records": records})
    assert answer.status_code == 200, answer.text
    run = client.get("/api/v1/runs/huge")
    assert f'"last_step":{2**62 - 1}' in run.text.replace(" ", "")  # the digits themselves, not a rounded double
    assert run.json()["last_step"] == 2**62 - 1 and float(2**62 - 1) != 2**62 - 1


def test_steps_beyond_2_to_62_are_refused(sqlite_service: LiveService) -> None:
    response = sqlite_service.client.post("/api/v1/runs/none/diagnostics",
                                          json={"records": [{"step": 2**62 + 1, "epoch": 0}]})
    assert response.status_code in (404, 422)
    assert sqlite_service.client.put("/api/v1/runs/over", json={}).status_code == 201
    refused = sqlite_service.client.post("/api/v1/runs/over/diagnostics",
                                         json={"records": [{"step": 2**62 + 1, "epoch": 0}]})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"][-1] == "step"
    assert str(2**62 + 1) not in refused.text


def test_openapi_documents_the_step_range(sqlite_service: LiveService) -> None:
    schema = httpx.get(f"{sqlite_service.base_url}/openapi.json").json()
    step = schema["components"]["schemas"]["DiagnosticRecord"]["properties"]["step"]
    assert step["maximum"] == 2**62 and "BigInt" in step["description"]
    assert json.dumps(step)  # sanity: the schema itself is plain JSON
