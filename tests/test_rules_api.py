"""Rules as data through the real service: config_report, 422 naming the field, GET rules, stale sweep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.reliability import wait_until
from tests.support.service import LiveService

REAL_LAYOUT = {
    "model": {"hyperlora_max_norm": 1.0},
    "training": {"meta_escalation": {"start_epoch": 25, "max_grad_explosion_events_per_epoch": 2,
                                     "late_phase": {"enabled": True, "start_epoch": 50,
                                                    "max_grad_explosion_events": 0}}},
    "monitoring": {"attn_max_collapse_threshold": 0.02, "lora_norm_warn": 2.0},
    "data": {"hundreds": {"of": ["unrelated", "keys"]}},
}


def test_put_answer_reports_used_keys_defaults_phases_and_rules(service: LiveService) -> None:
    config = {**REAL_LAYOUT, "monitor": {"rules": [{"name": "my_rule", "reading": "extra.my_metric", "above": 5},
                                                   {"name": "attention_weak", "enabled": False}]}}
    answer = service.json("PUT", "/api/v1/runs/rep", json={"config": config})
    report = answer["config_report"]
    assert report["used"]["lora_max_norm"] == {"key": "model.hyperlora_max_norm", "value": 1.0}
    assert report["used"]["attention_collapse_threshold"]["key"] == "monitoring.attn_max_collapse_threshold"
    assert report["defaults"]["logit_clamp_threshold"] == 50.0
    assert report["phases"]["max_grad_explosion_events_per_epoch"][0]["from_epoch"] == 50
    assert report["rules"] == {"added": ["my_rule"], "overridden": ["attention_weak"],
                               "disabled": ["stop_variance", "attention_weak"]}
    again = service.json("PUT", "/api/v1/runs/rep", json={})
    assert again["config_report"] == report, "a resumed trainer's PUT reports the stored config"


@pytest.mark.parametrize(("rule", "loc"), [
    ({"name": "x", "reading": "loss", "above": "secret-ish"}, ["above"]),
    ({"name": "x", "reading": "loss / epoch.eval_accuracy", "above": 1}, ["reading"]),
    ({"name": "x", "reading": "loss", "above": 1, "for": -1}, ["for"]),
    ({"name": "x", "reading": "loss", "abvoe": 1}, ["abvoe"]),
])
def test_bad_rules_are_422_naming_the_field_without_echo(sqlite_service: LiveService, rule: dict,
                                                         loc: list) -> None:
    response = sqlite_service.client.put("/api/v1/runs/bad", json={"config": {"monitor": {"rules": [rule]}}})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert ["body", "config", "monitor", "rules", 0, *loc] in [error["loc"] for error in detail]
    assert all(set(error) == {"type", "loc", "msg"} for error in detail)
    assert "secret-ish" not in response.text
    assert sqlite_service.client.get("/api/v1/runs/bad").status_code == 404, "nothing stored"


def test_unknown_monitor_key_is_422(sqlite_service: LiveService) -> None:
    response = sqlite_service.client.put("/api/v1/runs/bad", json={"config": {"monitor": {"batch_fro": 3}}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "config", "monitor", "batch_fro"]


def test_get_rules_lists_effective_rules_sources_and_states_per_rank(service: LiveService) -> None:
    service.json("PUT", "/api/v1/runs/rl", json={"config": {"monitor": {"batch_for": 2}, **REAL_LAYOUT}})
    records = [{"step": s, "epoch": 0, "rank": rank, "attention_max": 0.001 if rank else 0.9}
               for s in range(3) for rank in (0, 1)]
    service.json("POST", "/api/v1/runs/rl/diagnostics", json={"records": records})
    body = service.json("GET", "/api/v1/runs/rl/rules")
    rules = {rule["name"]: rule for rule in body["rules"]}
    collapse = rules["attention_collapse"]
    assert collapse["severity"] == "pause" and collapse["for"] == 2
    sources = {t["param"]: t for t in collapse["thresholds"]}
    assert sources["attention_collapse_threshold"]["source"] == "monitoring.attn_max_collapse_threshold"
    assert sources["attention_peak_ratio_min"]["source"] == "default"
    states = {s["rank"]: s for s in collapse["states"]}
    assert states[1]["status"] == "firing" and states[0]["status"] == "ok"
    assert states[1]["metric"] == "attention_max" and states[1]["current_definition"] is True
    assert body["config_report"]["used"]["lora_max_norm"]["value"] == 1.0
    assert service.client.get("/api/v1/runs/nope/rules").status_code == 404


@pytest.fixture
def sweeping_service(sqlite_url: str, token: str, tmp_path: Path) -> Iterator[LiveService]:
    live = LiveService(sqlite_url, token, tmp_path / "service.log", env={"MONITOR_STALE_SWEEP_SECONDS": "0.2"}).start()
    try:
        yield live
    finally:
        live.close()


def test_a_silent_rank_fires_stream_stale_and_a_new_record_resolves_it(sweeping_service: LiveService) -> None:
    service = sweeping_service
    service.json("PUT", "/api/v1/runs/st", json={"config": {"monitor": {"stream_stale_seconds": 0.5}}})
    service.json("POST", "/api/v1/runs/st/diagnostics", json={"records": [{"step": 1, "epoch": 0, "loss": 1.0}]})

    def kinds() -> list[str]:
        events = service.json("GET", "/api/v1/runs/st/events")["rule_events"]
        return [e["kind"] for e in events if e["rule"] == "stream_stale"]

    wait_until(lambda: kinds() == ["fired"], timeout=60, what="stream_stale fired by the sweep")
    assert service.json("GET", "/escalation/decision", params={"run_id": "st"})["health"] == "warning"
    service.json("POST", "/api/v1/runs/st/diagnostics", json={"records": [{"step": 2, "epoch": 0, "loss": 1.0}]})
    assert kinds()[:2] == ["fired", "resolved"]


def test_backtest_honours_the_runs_escalation_start(sqlite_service: LiveService) -> None:
    config = {"meta_escalation": {"start_epoch": 1}}
    sqlite_service.json("PUT", "/api/v1/runs/bs", json={"config": config, "escalation_start_epoch": 4})
    for epoch in range(6):
        records = [{"step": epoch * 5 + s, "epoch": epoch, "loss": 1.0} for s in range(5)]
        sqlite_service.json("POST", "/api/v1/runs/bs/diagnostics", json={"records": records})
        sqlite_service.json("POST", "/api/v1/runs/bs/epochs", json={"epoch": epoch, "max_nan_streak": 9})
    result = sqlite_service.json("POST", "/api/v1/runs/bs/backtest", json={})
    assert result["escalation_start_epoch"] == 4
    assert result["first_pause"]["epoch"] == 4, "the PUT field wins over meta_escalation.start_epoch"
