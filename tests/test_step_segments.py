"""Steps and segments (issue 18.8): a wild step or a rewind never turns evaluation off silently."""

from __future__ import annotations

from pathlib import Path

from monitor.rules.engine import RuleEngine
from monitor.rules.ruleset import RuleSet
from monitor.rules.types import BatchReading
from tests.support.service import LiveService

WILD = 2**62
HEALTHY = {"attention_max": 0.9, "attention_max_mean": 0.9, "attention_entropy": 1.0,
           "attention_peak_ratio": 50.0, "attention_entropy_norm": 0.2, "loss": 0.5}
# Uniform attention under every attention reading there is: the collapse rule pauses on it.
COLLAPSED = {"attention_max": 0.001, "attention_max_mean": 0.001, "attention_entropy": 7.0,
             "attention_peak_ratio": 1.0, "attention_entropy_norm": 1.0, "loss": 0.5}


def _records(steps: range | list[int], readings: dict, session: str | None = None, rank: int = 0) -> list[dict]:
    extra = {} if session is None else {"session": session}
    return [{"step": s, "epoch": 0, "rank": rank, **readings, **extra} for s in steps]


def _post(service: LiveService, records: list[dict], run_id: str = "s"):
    return service.client.post(f"/api/v1/runs/{run_id}/diagnostics", json={"records": records})


def _ingest(service: LiveService, records: list[dict], run_id: str = "s") -> dict:
    response = _post(service, records, run_id)
    assert response.status_code == 200, response.text
    return response.json()


def _decision(service: LiveService, run_id: str = "s") -> str:
    return service.json("GET", "/escalation/decision", params={"run_id": run_id})["decision"]


def test_the_engine_cursor_is_segment_aware() -> None:
    engine, states = RuleEngine(RuleSet.from_run_config({})), {}
    engine.evaluate_batch(states, BatchReading(step=100, epoch=0, loss=1.0))
    engine.evaluate_batch(states, BatchReading(step=5, epoch=0, loss=1.0, segment=1))
    assert {(s.last_segment, s.last_step) for s in states.values()} == {(1, 5)}
    engine.evaluate_batch(states, BatchReading(step=101, epoch=0, loss=1.0))  # from the older segment: late
    assert {(s.last_segment, s.last_step) for s in states.values()} == {(1, 5)}


def test_an_absurd_jump_is_refused_and_evaluation_goes_on(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/s", json={}).status_code == 201
    assert _ingest(service, _records(range(10), HEALTHY))["accepted"] == 10
    refused = _post(service, _records([10, WILD, 11], HEALTHY))
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert [item["loc"] for item in detail] == [["body", "records", 1, "step"]]
    assert all(set(item) == {"type", "loc", "msg"} for item in detail)
    assert str(WILD) not in refused.text
    assert len(service.json("GET", "/api/v1/runs/s/diagnostics")["records"]) == 10, "nothing of it stored"
    answer = _ingest(service, _records(range(10, 40), COLLAPSED))
    assert answer["accepted"] == 30 and answer["late"] == 0 and answer["last_step"] == 39
    assert _decision(service) == "pause", "evaluation went on after the refused jump"


def test_the_first_record_of_a_rank_may_not_jump_either(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/s", json={}).status_code == 201
    refused = _post(service, _records([WILD], HEALTHY, rank=3))
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "records", 0, "step"]


def test_a_resume_with_a_new_session_starts_a_segment(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/s", json={}).status_code == 201
    first = _ingest(service, _records(range(100), HEALTHY, session="proc-a"))
    assert first["late"] == 0 and first["notes"] == []
    resumed = _ingest(service, _records(range(50, 80), COLLAPSED, session="proc-b"))  # checkpoint at 50
    assert resumed["accepted"] == 30 and resumed["late"] == 0 and resumed["duplicates"] == 0
    assert resumed["last_step"] == 79
    assert any("segment 1" in note for note in resumed["notes"]), resumed
    assert _decision(service) == "pause", "the rewound segment was evaluated"
    replay = _ingest(service, _records(range(90, 100), HEALTHY, session="proc-a"))  # a spill replayed late
    assert replay == {**replay, "accepted": 0, "duplicates": 10}
    straggler = _ingest(service, _records(range(100, 105), HEALTHY, session="proc-a"))
    assert straggler["accepted"] == 5 and straggler["late"] == 5 and straggler["notes"]
    stored = service.json("GET", "/api/v1/runs/s/diagnostics", params={"step_min": 50, "step_max": 50})
    assert sorted(r["segment"] for r in stored["records"]) == [0, 1]


def test_a_rewind_without_a_session_is_late_and_said(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/s", json={}).status_code == 201
    _ingest(service, _records(range(100), HEALTHY))
    rewound = _ingest(service, _records(range(50, 80), COLLAPSED))
    assert rewound["accepted"] == 0 and rewound["duplicates"] == 30  # same (rank, segment, step)
    late = _ingest(service, _records(range(200, 210), HEALTHY) + _records(range(150, 160), HEALTHY))
    assert late["accepted"] == 20 and late["late"] == 0  # out of order within a request is fine
    after = _ingest(service, _records(range(160, 170), HEALTHY))
    assert after["accepted"] == 10 and after["late"] == 10
    assert any("not evaluated" in note for note in after["notes"])
    assert "monitor_records_late_total 10.0" in service.client.get("/metrics").text


def test_the_same_step_twice_with_different_readings_is_said(service: LiveService) -> None:
    assert service.client.put("/api/v1/runs/s", json={}).status_code == 201
    skipped_nan = [{"step": 7, "epoch": 0, "loss": "NaN"}, {"step": 7, "epoch": 0, "loss": 0.4}]
    answer = _ingest(service, skipped_nan)
    assert answer["accepted"] == 1 and answer["duplicates"] == 1
    assert any("different readings" in note for note in answer["notes"]), answer


def test_the_jump_limit_is_a_setting(sqlite_url: str, token: str, tmp_path: Path) -> None:
    live = LiveService(sqlite_url, token, tmp_path / "service.log", env={"MONITOR_MAX_STEP_JUMP": "100"}).start()
    try:
        assert live.client.put("/api/v1/runs/s", json={}).status_code == 201
        assert _ingest(live, _records([100], HEALTHY))["accepted"] == 1
        assert _post(live, _records([201], HEALTHY)).status_code == 422
        assert _ingest(live, _records([200], HEALTHY))["accepted"] == 1
    finally:
        live.close()


def test_the_largest_index_is_stored_where_the_limit_allows(database_url: str, token: str, tmp_path: Path) -> None:
    live = LiveService(database_url, token, tmp_path / "service.log", env={"MONITOR_MAX_STEP_JUMP": str(WILD)}).start()
    try:
        assert live.client.put("/api/v1/runs/s", json={}).status_code == 201
        assert _ingest(live, _records([WILD], HEALTHY))["last_step"] == WILD
        window = live.json("GET", "/api/v1/runs/s/diagnostics", params={"step_min": WILD})["records"]
        assert [r["step"] for r in window] == [WILD]
    finally:
        live.close()


def test_a_bad_session_is_a_documented_422(sqlite_service: LiveService) -> None:
    sqlite_service.client.put("/api/v1/runs/s", json={})
    for bad in ("", "x" * 101, "bad\u0000id"):
        response = _post(sqlite_service, _records([0], HEALTHY, session=bad))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][:4] == ["body", "records", 0, "session"]
