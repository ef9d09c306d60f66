"""Ingestion, idempotency, NaN/Inf round trip and error answers, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math

import httpx

from tests.support.service import LiveService

READINGS = {
    "lora_norm_mean": 1.27,
    "lora_norm_max": 1.9,
    "stop_logit_var": 0.8,
    "attention_max": 0.7,
    "attention_entropy": 3.1,
    "logit_min": -20.0,
    "logit_max": 25.0,
    "accuracy": 0.9,
    "loss": 0.31,
    "nan_count": 0.0,
    "grad_norm": 1.5,
}


def make_records(first: int, count: int, epoch: int = 0, rank: int = 0) -> list[dict]:
    return [{"step": s, "epoch": epoch, "rank": rank, **READINGS} for s in range(first, first + count)]


def put_run(service: LiveService, run_id: str = "run-1", **body) -> httpx.Response:
    return service.client.put(f"/api/v1/runs/{run_id}", json={"name": "test run", **body})


def test_put_run_is_idempotent(service: LiveService) -> None:
    first = put_run(service, config={"hyper_lora": {"lora_max_norm": 2.5}})
    assert first.status_code == 201, first.text
    again = put_run(service, config={"hyper_lora": {"lora_max_norm": 2.5}})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["created_at"] == first.json()["created_at"]
    resumed = service.client.put("/api/v1/runs/run-1", json={})
    assert resumed.status_code == 200
    assert resumed.json()["config"] == {"hyper_lora": {"lora_max_norm": 2.5}}
    listed = service.json("GET", "/api/v1/runs")
    assert [run["run_id"] for run in listed] == ["run-1"]


def test_ingest_counts_retries_as_duplicates(service: LiveService) -> None:
    put_run(service)
    body = {"records": make_records(0, 100)}
    assert service.json("POST", "/api/v1/runs/run-1/diagnostics", json=body)["accepted"] == 100
    retry = service.json("POST", "/api/v1/runs/run-1/diagnostics", json=body)
    assert retry == {"accepted": 0, "duplicates": 100, "last_step": 99, "late": 0, "notes": []}
    overlap = {"records": make_records(50, 100) + make_records(149, 1)}
    assert service.json("POST", "/api/v1/runs/run-1/diagnostics", json=overlap) == {
        "accepted": 50, "duplicates": 51, "last_step": 149, "late": 0, "notes": []}
    other_rank = {"records": make_records(0, 10, rank=1)}
    assert service.json("POST", "/api/v1/runs/run-1/diagnostics", json=other_rank)["accepted"] == 10
    run = service.json("GET", "/api/v1/runs/run-1")
    assert run["record_count"] == 160
    stored = service.json("GET", "/api/v1/runs/run-1/diagnostics", params={"rank": 0})["records"]
    assert [r["step"] for r in stored] == list(range(150))


def test_nan_and_infinity_round_trip(service: LiveService) -> None:
    put_run(service)
    bare = '{"records": [{"step": 0, "epoch": 0, "loss": NaN, "logit_max": Infinity, "logit_min": -Infinity,' \
           ' "extra": {"lr": NaN}}]}'
    response = service.client.post("/api/v1/runs/run-1/diagnostics", content=bare,
                                   headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    strings = {"records": [{"step": 1, "epoch": 0, "loss": "NaN", "logit_max": "Infinity",
                            "logit_min": "-Infinity", "accuracy": 0.5, "extra": {"lr": "Infinity"}}]}
    assert service.json("POST", "/api/v1/runs/run-1/diagnostics", json=strings)["accepted"] == 1
    records = service.json("GET", "/api/v1/runs/run-1/diagnostics")["records"]
    assert [r["step"] for r in records] == [0, 1]
    for record in records:
        assert record["loss"] == "NaN"
        assert record["logit_max"] == "Infinity"
        assert record["logit_min"] == "-Infinity"
        assert record["attention_max"] is None  # missing stays missing, not NaN
    assert records[0]["extra"] == {"lr": "NaN"}
    assert records[1]["extra"] == {"lr": "Infinity"}
    assert records[1]["accuracy"] == 0.5
    # Python's json reads the strings back as floats with the decoder's parse_constant
    assert math.isnan(json.loads('{"v": NaN}')["v"])


def test_malformed_batch_is_rejected_whole_with_the_field_named(service: LiveService) -> None:
    put_run(service)
    records = make_records(0, 10)
    records[7]["attention_max"] = "high"
    response = service.client.post("/api/v1/runs/run-1/diagnostics", json={"records": records})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "records", 7, "attention_max"]
    records[7]["attention_max"] = 0.5
    records[3]["bogus_reading"] = 1.0
    response = service.client.post("/api/v1/runs/run-1/diagnostics", json={"records": records})
    assert response.status_code == 422
    assert "bogus_reading" in json.dumps(response.json()["detail"])
    negative = service.client.post("/api/v1/runs/run-1/diagnostics",
                                   json={"records": [{"step": -1, "epoch": 0}]})
    assert negative.status_code == 422
    assert service.json("GET", "/api/v1/runs/run-1")["record_count"] == 0


def test_unknown_run_is_404(service: LiveService) -> None:
    response = service.client.post("/api/v1/runs/ghost/diagnostics", json={"records": make_records(0, 1)})
    assert response.status_code == 404
    assert "ghost" in response.json()["detail"]
    assert service.client.get("/escalation/decision", params={"run_id": "ghost"}).status_code == 404


def test_every_api_call_needs_a_valid_token(service: LiveService) -> None:
    put_run(service)
    calls = [
        ("PUT", "/api/v1/runs/x", {"json": {}}),
        ("GET", "/api/v1/runs", {}),
        ("GET", "/api/v1/runs/run-1", {}),
        ("POST", "/api/v1/runs/run-1/diagnostics", {"json": {"records": make_records(0, 1)}}),
        ("GET", "/api/v1/runs/run-1/diagnostics", {}),
        ("POST", "/api/v1/runs/run-1/epochs", {"json": {"epoch": 0}}),
        ("GET", "/api/v1/runs/run-1/events", {}),
        ("GET", "/escalation/decision?run_id=run-1", {}),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        for method, path, kwargs in calls:
            response = httpx.request(method, service.base_url + path, headers=headers, **kwargs)
            assert response.status_code == 401, (method, path, headers)
            assert response.json() == {"detail": "missing or invalid bearer token"}
    assert service.json("GET", "/api/v1/runs/run-1")["record_count"] == 0


def test_epoch_summary_is_stored_once(service: LiveService) -> None:
    put_run(service)
    body = {"epoch": 0, "eval_accuracy": 0.5, "grad_explosion_events": 0, "max_nan_streak": 0}
    first = service.json("POST", "/api/v1/runs/run-1/epochs", json=body)
    assert first == {"accepted": True, "duplicate": False, "decision": "continue"}
    again = service.json("POST", "/api/v1/runs/run-1/epochs", json=body)
    assert again["duplicate"] is True
    assert service.json("GET", "/api/v1/runs/run-1")["last_epoch"] == 0
