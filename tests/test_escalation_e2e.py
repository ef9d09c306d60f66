"""The decision endpoint on the real service, driven by realistic traces.

The collapse trace must pause before accuracy starts to fall; the healthy one never pauses;
a restarted service answers the same; the backtest replays stored runs with other thresholds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from monitor.floats import encode_tree
from monitor.scenarios.traces import Trace, collapse_run, healthy_run
from tests.support.service import REPO_ROOT, LiveService

STEPS_PER_EPOCH = 20


def stream_epoch(service: LiveService, run_id: str, trace: Trace, epoch: int) -> dict:
    """Send one epoch's batches in two requests, close the epoch, return the decision."""
    rows = [row for row in trace.batches if row["epoch"] == epoch]
    half = len(rows) // 2
    for part in (rows[:half], rows[half:]):
        service.json("POST", f"/api/v1/runs/{run_id}/diagnostics", json={"records": encode_tree(part)})
    for summary in (s for s in trace.epochs if s["epoch"] == epoch):
        service.json("POST", f"/api/v1/runs/{run_id}/epochs", json=encode_tree(summary))
    return service.json("GET", "/escalation/decision", params={"run_id": run_id})


def test_collapse_pauses_before_accuracy_drops(service: LiveService) -> None:
    trace = collapse_run(epochs=70, steps_per_epoch=STEPS_PER_EPOCH)
    service.json("PUT", "/api/v1/runs/collapse", json={"name": "collapse", "config": trace.config})
    first_pause_epoch = None
    for epoch in range(70):
        decision = stream_epoch(service, "collapse", trace, epoch)
        if decision["decision"] == "pause":
            first_pause_epoch = epoch
            assert decision["reasons"], decision
            assert {r["rule"] for r in decision["reasons"]} & {"attention_collapse", "accuracy_drop"}
            break
    assert first_pause_epoch is not None, "the collapse never paused"
    assert first_pause_epoch < trace.accuracy_drop_epoch
    assert first_pause_epoch >= trace.config["meta_escalation"]["start_epoch"]
    kinds = service.json("GET", "/api/v1/runs/collapse/events")
    assert any(event["kind"] == "fired" for event in kinds["rule_events"])
    assert kinds["decisions"][-1]["decision"] == "pause"


def test_healthy_run_never_pauses(sqlite_service: LiveService) -> None:
    trace = healthy_run(epochs=60, steps_per_epoch=STEPS_PER_EPOCH, ranks=2)
    sqlite_service.json("PUT", "/api/v1/runs/healthy", json={"config": trace.config})
    for epoch in range(60):
        decision = stream_epoch(sqlite_service, "healthy", trace, epoch)
        assert decision["decision"] == "continue", (epoch, decision)
    run = sqlite_service.json("GET", "/api/v1/runs/healthy")
    assert run["record_count"] == len(trace.batches)


def test_decision_survives_restart(sqlite_url: str, token: str, tmp_path: Path) -> None:
    trace = collapse_run(epochs=58, steps_per_epoch=STEPS_PER_EPOCH)
    service = LiveService(sqlite_url, token, tmp_path / "log").start()
    try:
        service.json("PUT", "/api/v1/runs/r", json={"config": trace.config})
        for epoch in range(58):
            before = stream_epoch(service, "r", trace, epoch)
        service.kill()
        service.start()
        after = service.json("GET", "/escalation/decision", params={"run_id": "r"})
        assert after == before
        assert after["decision"] == "pause"
    finally:
        service.close()


def test_backtest_with_other_thresholds(sqlite_service: LiveService) -> None:
    trace = collapse_run(epochs=60, steps_per_epoch=STEPS_PER_EPOCH)
    sqlite_service.json("PUT", "/api/v1/runs/bt", json={"config": trace.config})
    for epoch in range(60):
        stream_epoch(sqlite_service, "bt", trace, epoch)
    stored = sqlite_service.json("POST", "/api/v1/runs/bt/backtest", json={})
    assert stored["first_pause"] is not None
    assert stored["batches"] == len(trace.batches)
    strict = sqlite_service.json("POST", "/api/v1/runs/bt/backtest",
                                 json={"config": {"meta_escalation": {"attention_collapse_threshold": 0.6}}})
    assert strict["first_pause"]["step"] < stored["first_pause"]["step"]
    lax = sqlite_service.json("POST", "/api/v1/runs/bt/backtest",
                              json={"config": {"recursive_solver": {"logit_clamp_threshold": 1000}}})
    assert "logit_range" in stored["spans"] and "logit_range" not in lax["spans"]
    bad = sqlite_service.client.post("/api/v1/runs/bt/backtest",
                                     json={"config": {"hyper_lora": {"lora_max_norm": "big"}}})
    assert bad.status_code == 422
    # On purpose (issue 17): the 422 is a list of {type, loc, msg} naming the field, not a sentence.
    assert ["body", "config", "hyper_lora", "lora_max_norm"] in [e["loc"] for e in bad.json()["detail"]]
    assert "big" not in bad.text
    cli = subprocess.run(
        [sys.executable, "-m", "monitor", "backtest", "bt", "--database-url", sqlite_service.database_url,
         "--set", "meta_escalation.attention_collapse_threshold=0.6"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert f"first pause: step {strict['first_pause']['step']}" in cli.stdout
    assert "attention_collapse" in cli.stdout
