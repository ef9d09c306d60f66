"""The decision answer stored with the run (migration 0003): what the endpoint serves.

Every write that changes a decision's inputs stores the answer; these tests check that the
stored answer is exactly what computing it from the rule states gives, that a PUT which
changes the escalation start re-decides at once, and that runs without a stored answer
(stored before the migration) are still answered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

from monitor.scenarios.traces import collapse_run
from monitor.schemas.escalation import DecisionAnswer
from tests.support.service import LiveService
from tests.test_escalation_e2e import STEPS_PER_EPOCH, stream_epoch


def _stream_until_pause(service: LiveService, run_id: str) -> tuple[int, dict[str, Any]]:
    """Stream the collapse trace epoch by epoch until the decision is pause."""
    trace = collapse_run(epochs=70, steps_per_epoch=STEPS_PER_EPOCH)
    service.json("PUT", f"/api/v1/runs/{run_id}", json={"config": trace.config})
    for epoch in range(70):
        decision = stream_epoch(service, run_id, trace, epoch)
        if decision["decision"] == "pause":
            return epoch, decision
    raise AssertionError("the collapse trace never paused")


def _stored_body(service: LiveService, run_id: str) -> str | None:
    engine = create_engine(service.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT decision_body FROM runs WHERE run_id = :r"), {"r": run_id}).scalar()
    finally:
        engine.dispose()


def _forget_stored_body(service: LiveService, run_id: str) -> None:
    engine = create_engine(service.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE runs SET decision_body = NULL WHERE run_id = :r"), {"r": run_id})
    finally:
        engine.dispose()


def test_stored_answer_is_the_computed_one(service: LiveService) -> None:
    _, paused = _stream_until_pause(service, "stored")
    response = service.client.get("/escalation/decision", params={"run_id": "stored"})
    assert response.headers["content-type"] == "application/json"
    assert response.text == _stored_body(service, "stored")
    _forget_stored_body(service, "stored")  # as for a run stored before migration 0003
    computed = service.json("GET", "/escalation/decision", params={"run_id": "stored"})
    assert computed == paused == response.json()
    assert computed["reasons"] and computed["step"] is not None and computed["run_id"] == "stored"
    DecisionAnswer.model_validate(computed)  # the OpenAPI document describes what is served


def test_put_moving_the_escalation_start_redecides_at_once(service: LiveService) -> None:
    epoch, _ = _stream_until_pause(service, "gated")
    service.json("PUT", "/api/v1/runs/gated", json={"escalation_start_epoch": epoch + 100})
    held = service.json("GET", "/escalation/decision", params={"run_id": "gated"})
    assert held["decision"] == "continue", held
    assert held["escalation_start_epoch"] == epoch + 100 and "starts at epoch" in held["note"]
    assert held["warnings"], "firing pause rules are still reported before the start epoch"
    DecisionAnswer.model_validate(held)
    service.json("PUT", "/api/v1/runs/gated", json={"escalation_start_epoch": 0})
    assert service.json("GET", "/escalation/decision", params={"run_id": "gated"})["decision"] == "pause"
    timeline = [row["decision"] for row in service.json("GET", "/api/v1/runs/gated/events")["decisions"]]
    assert timeline[-3:] == ["pause", "continue", "pause"]


def test_new_run_has_an_answer_before_any_reading(sqlite_service: LiveService) -> None:
    sqlite_service.json("PUT", "/api/v1/runs/fresh", json={"config": {}})
    answer = sqlite_service.json("GET", "/escalation/decision", params={"run_id": "fresh"})
    assert answer["decision"] == "continue" and answer["health"] == "ok" and answer["step"] is None
    assert _stored_body(sqlite_service, "fresh") is not None
    missing = sqlite_service.client.get("/escalation/decision", params={"run_id": "nope"})
    assert missing.status_code == 404
