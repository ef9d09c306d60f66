"""Retention: old raw rows go once rolled up; rollups, rule states and decisions stay."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from monitor.schemas.diagnostics import DiagnosticRecord
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.diagnostics import insert_records
from monitor.store.migrate import upgrade
from monitor.store.models import Diagnostic, EpochRecord, Run, utcnow
from monitor.store.retention import prune_raw_diagnostics
from monitor.store.rollup_models import SeriesRollup
from monitor.store.rollups import WIDTHS, update_rollups
from tests.support.service import REPO_ROOT, LiveService

DAY = 86_400.0
READINGS = {"attention_max": 0.7, "attention_entropy": 3.0, "loss": 0.3, "accuracy": 0.9, "grad_norm": 1.2}


@pytest.fixture
def db(database_url: str) -> Database:
    upgrade(database_url)
    database = Database(database_url)
    yield database
    database.dispose()


def store(db: Database, run_id: str, records: list[dict], *, rollups: bool = True, age_days: float = 40) -> None:
    """Ingest as the API does (rows plus rollups, run locked), in a run created ``age_days`` ago."""
    with db.write_session() as session:
        if session.get(Run, run_id) is None:
            runs.create_or_get_run(session, run_id, name=None, project=None, config=None, escalation_start_epoch=None)
            session.flush()
            session.execute(update(Run).where(Run.run_id == run_id).values(created_at=utcnow() - timedelta(age_days)))
        run = runs.get_run(session, run_id, lock=True)
        parsed = [DiagnosticRecord(**record) for record in records]
        outcome = insert_records(session, run, parsed)
        if rollups:
            update_rollups(session, run_id, outcome.new_records)


def record(step: int, timestamp: float | None, rank: int = 0, **readings: float) -> dict:
    return {"step": step, "epoch": step // 100, "rank": rank, "timestamp": timestamp, **READINGS, **readings}


def steps(db: Database, run_id: str, rank: int = 0) -> list[int]:
    with db.read_session() as session:
        query = select(Diagnostic.step).where(Diagnostic.run_id == run_id, Diagnostic.rank == rank)
        return sorted(session.scalars(query))


def rollup_rows(db: Database) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(SeriesRollup))


def test_prunes_whole_rolled_up_buckets_older_than_the_cutoff(db: Database,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    now = time.time()
    old = [record(s, now - 35 * DAY + s) for s in range(700)]
    old[123] = record(123, now - 35 * DAY, loss=100.0)  # a spike the charts must keep showing
    old[124] = record(124, now - 35 * DAY, loss=math.nan)
    store(db, "r", old + [record(s, now - DAY) for s in range(700, 1000)])
    store(db, "r", [record(s, now - 35 * DAY, rank=1) for s in range(300)], rollups=False)
    rollups_before = rollup_rows(db)

    dry = prune_raw_diagnostics(db, timedelta(days=30), dry_run=True)
    assert (dry.deleted, dry.kept_without_rollups) == (640, 256)  # whole 64-step buckets only
    assert len(steps(db, "r")) == 1000

    with caplog.at_level(logging.INFO, logger="monitor.store.retention"):
        done = prune_raw_diagnostics(db, timedelta(days=30), batch_rows=100)
    assert (done.deleted, done.kept_without_rollups) == (640, 256)
    assert steps(db, "r") == list(range(640, 1000))
    assert steps(db, "r", rank=1) == list(range(300)), "no rollups: nothing may go"
    assert rollup_rows(db) == rollups_before
    assert any("deleted 640 raw rows" in message for message in caplog.messages)
    with db.read_session() as session:
        buckets = list(session.scalars(select(SeriesRollup).where(
            SeriesRollup.run_id == "r", SeriesRollup.metric == "loss", SeriesRollup.rank == 0)))
        assert {(b.width, b.max_step, b.max_value) for b in buckets} >= {(w, 123, 100.0) for w in WIDTHS}
        assert {(b.width, b.nonfinite_step) for b in buckets if b.nonfinite_count} == {(w, 124) for w in WIDTHS}
        assert session.get(Run, "r").record_count == 1300
    assert prune_raw_diagnostics(db, timedelta(days=30)).deleted == 0  # idempotent


def test_rows_without_timestamp_age_with_their_closed_epoch(db: Database) -> None:
    store(db, "e", [record(s, None) for s in range(400)])
    with db.write_session() as session:
        for epoch, age in ((0, 39), (1, 38), (2, 1)):
            session.add(EpochRecord(run_id="e", rank=0, epoch=epoch, closed_at=utcnow() - timedelta(days=age)))
    report = prune_raw_diagnostics(db, timedelta(days=30))
    assert report.deleted == 192  # epochs 0-1 are old: steps 0..199, whole buckets: 0..191
    assert steps(db, "e")[0] == 192


def test_a_young_run_is_never_pruned_whatever_its_clock_says(db: Database) -> None:
    store(db, "young", [record(s, 0.0) for s in range(200)], age_days=1)
    assert prune_raw_diagnostics(db, timedelta(days=30)).deleted == 0
    assert prune_raw_diagnostics(db, timedelta(days=0.5)).deleted == 192


def test_incomplete_rollups_keep_their_rows(db: Database) -> None:
    now = time.time()
    store(db, "mixed", [record(s, now - 40 * DAY) for s in range(0, 64, 2)], rollups=False)  # before rollups
    store(db, "mixed", [record(s, now - 40 * DAY) for s in range(1, 64, 2)] + [record(64, now)])
    report = prune_raw_diagnostics(db, timedelta(days=30))
    assert (report.deleted, report.kept_without_rollups) == (0, 64)


def test_command_reports_and_respects_settings(sqlite_url: str, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    db = Database(sqlite_url)
    store(db, "c", [record(s, time.time() - 40 * DAY) for s in range(128)] + [record(128, time.time())])
    db.dispose()
    off = run_cli(sqlite_url)
    assert off.returncode == 0 and "retention is off" in off.stdout
    dry = run_cli(sqlite_url, "--older-than-days", "30", "--dry-run")
    assert dry.returncode == 0 and "would delete 128 raw rows" in dry.stdout, dry.stdout + dry.stderr
    configured = run_cli(sqlite_url, env={"MONITOR_RETENTION_RAW_DAYS": "30"})
    assert "deleted 128 raw rows" in configured.stdout, configured.stdout + configured.stderr
    assert "deleted 0 raw rows" in run_cli(sqlite_url, "--older-than-days", "30").stdout


def run_cli(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environment = {key: value for key, value in os.environ.items() if key != "MONITOR_RETENTION_RAW_DAYS"}
    return subprocess.run([sys.executable, "-m", "monitor", "retention", "--database-url", url, *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**environment, **(env or {})})


def test_decisions_and_rules_go_on_after_pruning(database_url: str, token: str, tmp_path: Path) -> None:
    service = LiveService(database_url, token, tmp_path / "log").start()
    try:
        service.json("PUT", "/api/v1/runs/p", json={"config": {"monitor": {"batch_for": 3}}})
        old = time.time() - 40 * DAY
        post(service, [record(s, old + s, loss=100.0 if s == 123 else 0.3) for s in range(300)])
        post(service, [record(s, old + s, attention_max=0.01) for s in range(300, 320)])
        post(service, [record(s, time.time(), attention_max=0.01) for s in range(320, 400)])
        before = service.json("GET", "/escalation/decision", params={"run_id": "p"})
        assert before["decision"] == "pause"
        db = Database(database_url)
        with db.write_session() as session:
            session.execute(update(Run).values(created_at=utcnow() - timedelta(days=40)))
        db.dispose()
        done = run_cli(database_url, "--older-than-days", "30")
        assert "deleted 320 raw rows" in done.stdout, done.stdout + done.stderr  # old rows: whole buckets 0-4
        assert service.json("GET", "/escalation/decision", params={"run_id": "p"}) == before
        assert service.json("GET", "/api/v1/runs/p")["record_count"] == 400
        chart = service.json("GET", "/api/v1/runs/p/series", params={"metrics": "loss", "step_min": 100,
                                                                      "step_max": 200})["series"]["loss"]
        assert (123, 100.0) in zip(chart["steps"], chart["values"]), "the pruned spike must still be drawn"
        post(service, [record(s, time.time()) for s in range(400, 460)])  # 60 healthy > batch_resolve (50)
        after = service.json("GET", "/escalation/decision", params={"run_id": "p"})
        assert after["decision"] == "continue", after
    finally:
        service.close()


def post(service: LiveService, records: list[dict]) -> None:
    result = service.json("POST", "/api/v1/runs/p/diagnostics", json={"records": records})
    assert result["accepted"] == len(records)
