"""GET /metrics: Prometheus text that counts what the service did, with one or several workers."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import MULTIPROC_ENV, prepare_metrics_dir
from monitor.store.database import Database
from monitor.store.models import Webhook, WebhookDelivery, utcnow
from tests.support.service import LiveService

HEALTHY = {"attention_max": 0.7, "attention_entropy": 3.0, "loss": 0.3, "accuracy": 0.9}


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (counters start there)."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def scrape(service: LiveService) -> str:
    response = service.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def ingest(service: LiveService, run_id: str, steps: range) -> dict:
    records = [{"step": step, "epoch": 0, **HEALTHY} for step in steps]
    return service.json("POST", f"/api/v1/runs/{run_id}/diagnostics", json={"records": records})


def test_counters_follow_ingestion_and_decisions(sqlite_service: LiveService) -> None:
    service = sqlite_service
    service.json("PUT", "/api/v1/runs/m1", json={})
    before = scrape(service)
    assert ingest(service, "m1", range(0, 120))["accepted"] == 120
    assert ingest(service, "m1", range(100, 150)) == {"accepted": 30, "duplicates": 20, "last_step": 149,
                                                      "late": 0, "notes": []}
    for _ in range(3):
        service.json("GET", "/escalation/decision", params={"run_id": "m1"})
    text = scrape(service)
    assert value(text, "monitor_records_ingested_total") - value(before, "monitor_records_ingested_total") == 150
    assert value(text, "monitor_records_duplicate_total") - value(before, "monitor_records_duplicate_total") == 20
    assert value(text, "monitor_rule_evaluations_total", kind="batch") >= 150
    assert value(text, "monitor_decisions_served_total", decision="continue") == 3
    route = "/api/v1/runs/{run_id}/diagnostics"
    assert value(text, "monitor_http_requests_total", method="POST", route=route, status="200") == 2
    assert value(text, "monitor_http_requests_total", method="GET", route="/escalation/decision",
                 status="200") == 3
    assert value(text, "monitor_http_request_duration_seconds_count", method="POST", route=route) == 2
    assert value(text, "monitor_build_info", version=httpx.get(f"{service.base_url}/healthz").json()["version"]) == 1


def test_fired_rules_and_errors_are_counted_by_template(sqlite_service: LiveService) -> None:
    service = sqlite_service
    service.json("PUT", "/api/v1/runs/m2", json={"config": {"monitor": {"batch_for": 3}}})
    collapsed = [{"step": step, "epoch": 0, **HEALTHY, "attention_max": 0.01} for step in range(10)]
    service.json("POST", "/api/v1/runs/m2/diagnostics", json={"records": collapsed})
    assert service.client.get("/api/v1/runs/nope").status_code == 404
    assert service.client.get("/no/such/path").status_code == 404
    text = scrape(service)
    assert value(text, "monitor_rule_transitions_total", rule="attention_collapse", kind="fired",
                 severity="pause") == 1
    assert value(text, "monitor_http_requests_total", method="GET", route="/api/v1/runs/{run_id}",
                 status="404") == 1
    assert value(text, "monitor_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert not any("nope" in str(key) for key in samples(text)), "raw paths must not become labels"


def test_oversized_body_is_counted_under_its_route(sqlite_url: str, token: str, tmp_path: Path) -> None:
    service = LiveService(sqlite_url, token, tmp_path / "log", env={"MONITOR_MAX_BODY_BYTES": "2000"}).start()
    try:
        service.json("PUT", "/api/v1/runs/big", json={})
        response = service.client.post("/api/v1/runs/big/diagnostics",
                                        json={"records": [{"step": s, "epoch": 0} for s in range(200)]})
        assert response.status_code == 413
        assert value(scrape(service), "monitor_http_requests_total", method="POST",
                     route="/api/v1/runs/{run_id}/diagnostics", status="413") == 1
    finally:
        service.close()


def test_metrics_need_the_token_unless_made_public(sqlite_url: str, token: str, tmp_path: Path) -> None:
    service = LiveService(sqlite_url, token, tmp_path / "log").start()
    try:
        assert httpx.get(f"{service.base_url}/metrics").status_code == 401
    finally:
        service.close()
    public = LiveService(sqlite_url, token, tmp_path / "log", env={"MONITOR_METRICS_PUBLIC": "true"}).start()
    try:
        assert httpx.get(f"{public.base_url}/metrics").status_code == 200
        assert httpx.get(f"{public.base_url}/api/v1/runs").status_code == 401  # only /metrics opens up
    finally:
        public.close()


def test_outbox_depth_is_read_from_the_database(sqlite_service: LiveService) -> None:
    db = Database(sqlite_service.database_url)
    later = utcnow() + timedelta(hours=1)  # not due: the delivery worker leaves these alone
    with db.write_session() as session:
        hook = Webhook(url="http://127.0.0.1:9/hook", secret="s", events=["rule.fired"], format="standard")
        session.add(hook)
        session.flush()
        for status, count in (("pending", 2), ("failed", 1), ("delivered", 4)):
            for n in range(count):
                session.add(WebhookDelivery(webhook_id=hook.id, event_id=f"evt_{status}_{n}", event_type="rule.fired",
                                            payload={}, status=status, next_attempt_at=later,
                                            created_at=utcnow() - timedelta(minutes=5)))
    db.dispose()
    text = scrape(sqlite_service)
    assert value(text, "monitor_outbox_deliveries", status="pending") == 2
    assert value(text, "monitor_outbox_deliveries", status="failed") == 1
    assert value(text, "monitor_outbox_oldest_pending_age_seconds") >= 299


@pytest.mark.postgres
def test_every_scrape_sums_all_workers(postgres_url: str, token: str, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    env = {MULTIPROC_ENV: str(metrics_dir)}
    for attempt in range(2):  # the second start must not add the first run's counters
        service = LiveService(postgres_url, token, tmp_path / "log", env=env, workers=2).start()
        try:
            service.json("PUT", "/api/v1/runs/w", json={})
            for first in range(0, 200, 10):  # fresh connections spread over both workers
                with httpx.Client(base_url=service.base_url, headers=service.auth_headers) as client:
                    client.post("/api/v1/runs/w/diagnostics", json={"records": [
                        {"step": attempt * 1000 + step, "epoch": 0, **HEALTHY} for step in range(first, first + 10)]})
            assert len({path.name.split("_")[-1] for path in metrics_dir.glob("*.db")}) >= 2, "one worker only"
            totals = {value(scrape(service), "monitor_records_ingested_total") for _ in range(6)}
            assert totals == {200}, totals
        finally:
            service.close()


def test_prepare_metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "")  # recorded, so teardown restores the original state
    monkeypatch.delenv(MULTIPROC_ENV)
    assert prepare_metrics_dir(1) is None and MULTIPROC_ENV not in os.environ
    created = prepare_metrics_dir(4)
    assert created is not None and created.is_dir() and os.environ[MULTIPROC_ENV] == str(created)
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROC_ENV, str(given))
    assert prepare_metrics_dir(1) == given
    assert sorted(p.name for p in given.iterdir()) == ["keep.txt"]
