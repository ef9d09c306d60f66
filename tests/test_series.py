"""Chart series: downsampling keeps spikes, NaN/Inf reported apart, zoom detail, auth, rollups, speed."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from monitor.schemas.diagnostics import READING_NAMES, DiagnosticRecord
from monitor.store import runs
from monitor.store.database import Database
from monitor.store.diagnostics import insert_records
from monitor.store.migrate import upgrade
from monitor.store.rollup_models import SeriesRollup
from monitor.store.rollups import (
    BUCKET_FIELDS,
    WIDTHS,
    Bucket,
    aggregate,
    fold_readings,
    rebuild_rollups,
    update_rollups,
)
from monitor.store.series import RAW_LIMIT, SeriesWindow, read_series
from monitor.store.series_readings import Readings
from tests.support.service import LiveService

SPIKE_STEP, DIP_STEP, NAN_STEP, INF_STEP = 3777, 1500, 1234, 2000


def wave(step: int, rank: int = 0) -> float:
    """A smooth, noisy loss-like curve (different per rank)."""
    return 1.0 + 0.5 * math.sin(step / 300.0) + 0.05 * ((step * 7919 + rank * 31) % 101) / 101 + rank


def records(first: int, count: int, rank: int = 0, epoch_len: int = 1000) -> list[dict]:
    """Records with a loss spike, a dip, a NaN and an Inf at known steps, plus an extra reading."""
    out = []
    for step in range(first, first + count):
        loss: float | str = wave(step, rank)
        if step == SPIKE_STEP:
            loss = 1000.0
        elif step == DIP_STEP:
            loss = -500.0
        elif step == NAN_STEP:
            loss = "NaN"
        elif step == INF_STEP:
            loss = "Infinity"
        out.append({"step": step, "epoch": step // epoch_len, "rank": rank, "loss": loss,
                    "accuracy": 0.5 + 0.4 * math.tanh(step / 2000), "extra": {"lr": 1e-4 * (1 + step % 3)}})
    return out


def ingest(service: LiveService, run_id: str, rows: list[dict], chunk: int = 5000) -> None:
    for start in range(0, len(rows), chunk):
        body = {"records": rows[start:start + chunk]}
        response = service.client.post(f"/api/v1/runs/{run_id}/diagnostics", json=body)
        assert response.status_code == 200, response.text


def make_run(service: LiveService, run_id: str = "series-run") -> str:
    assert service.client.put(f"/api/v1/runs/{run_id}", json={"name": run_id}).status_code in (200, 201)
    return run_id


def get_series(service: LiveService, run_id: str, **params) -> dict:
    response = service.client.get(f"/api/v1/runs/{run_id}/series", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_downsampling_keeps_extremes_and_reports_nonfinite(service: LiveService) -> None:
    run_id = make_run(service)
    ingest(service, run_id, records(0, 6000))
    body = get_series(service, run_id, metrics="loss,accuracy", max_points=200)
    loss = body["series"]["loss"]
    assert len(loss["steps"]) <= 200 and len(loss["steps"]) == len(loss["values"])
    assert loss["points_in_window"] == 5998  # NaN and Inf are not points
    assert loss["steps"] == sorted(loss["steps"])
    by_step = dict(zip(loss["steps"], loss["values"]))
    assert by_step[SPIKE_STEP] == 1000.0 and by_step[DIP_STEP] == -500.0
    assert [(p["step"], p["value"]) for p in loss["nonfinite"]] == [(NAN_STEP, "NaN"), (INF_STEP, "Infinity")]
    assert loss["nonfinite_total"] == 2
    assert body["series"]["accuracy"]["nonfinite"] == []
    assert body["last_step"] == 5999


def test_unknown_metric_is_422_in_the_documented_shape(service: LiveService) -> None:
    """422 locating the parameter, counting the unknown names without repeating them (issue 16.7)."""
    run_id = make_run(service)
    response = service.client.get(f"/api/v1/runs/{run_id}/series", params={"metrics": "loss,bogus_metric"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["query", "metrics"] and error["msg"].startswith("1 unknown metric")
    assert "bogus_metric" not in response.text
    inverted = service.client.get(f"/api/v1/runs/{run_id}/series", params={"step_min": 10, "step_max": 5})
    assert inverted.status_code == 422
    assert [error["loc"] for error in inverted.json()["detail"]] == [["query", "step_min"]]
    assert service.client.get("/api/v1/runs/no-such-run/series").status_code == 404


def test_series_requires_a_token(sqlite_service: LiveService) -> None:
    run_id = make_run(sqlite_service)
    url = f"{sqlite_service.base_url}/api/v1/runs/{run_id}/series"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, cookies={"monitor_token": sqlite_service.token}).status_code == 200


def test_zoom_window_returns_more_detail(service: LiveService) -> None:
    run_id = make_run(service)
    ingest(service, run_id, records(0, 6000))
    overview = get_series(service, run_id, metrics="loss", max_points=100)["series"]["loss"]
    in_window = [s for s in overview["steps"] if 3000 <= s <= 3200]
    zoomed = get_series(service, run_id, metrics="loss", max_points=100, step_min=3000, step_max=3200)
    detail = zoomed["series"]["loss"]
    assert 90 <= len(detail["steps"]) <= 100 and len(in_window) < 20
    assert min(detail["steps"]) >= 3000 and max(detail["steps"]) <= 3200
    exact = get_series(service, run_id, metrics="loss", max_points=500, step_min=3000, step_max=3200)
    assert exact["series"]["loss"]["steps"] == list(range(3000, 3201))


def test_ranks_merge_or_filter_and_extras(service: LiveService) -> None:
    run_id = make_run(service)
    ingest(service, run_id, records(0, 300, rank=0) + records(0, 300, rank=1))
    merged = get_series(service, run_id, metrics="loss,extra.lr", max_points=2000)["series"]
    assert merged["loss"]["points_in_window"] == 600
    rank1 = get_series(service, run_id, metrics="loss", rank=1)["series"]["loss"]
    assert rank1["steps"] == list(range(300))
    assert rank1["values"][10] == pytest.approx(wave(10, 1))
    assert sorted(set(merged["extra.lr"]["values"])) == pytest.approx([1e-4, 2e-4, 3e-4])
    assert get_series(service, run_id, metrics="extra.never_sent")["series"]["extra.never_sent"]["steps"] == []


def test_long_runs_are_served_from_rollups(sqlite_service: LiveService) -> None:
    """Past RAW_LIMIT readings the window is read from rollup buckets; spikes and NaN still show."""
    run_id = make_run(sqlite_service)
    ingest(sqlite_service, run_id, records(0, RAW_LIMIT + 6000))
    body = get_series(sqlite_service, run_id, metrics="loss", max_points=300)["series"]["loss"]
    assert body["source"].startswith("rollup:"), "update_rollups is not wired into ingestion"
    by_step = dict(zip(body["steps"], body["values"]))
    assert by_step[SPIKE_STEP] == 1000.0 and by_step[DIP_STEP] == -500.0
    assert [(p["step"], p["value"]) for p in body["nonfinite"]] == [(NAN_STEP, "NaN"), (INF_STEP, "Infinity")]
    assert body["nonfinite_total"] == 2
    assert body["points_in_window"] == RAW_LIMIT + 6000 - 2
    zoomed = get_series(sqlite_service, run_id, metrics="loss", step_min=3700, step_max=3800)["series"]["loss"]
    assert zoomed["source"] == "raw" and zoomed["steps"] == list(range(3700, 3801))


# --- store level: rollups merge exactly, pruned raw rows are stood in for -----------------------


def test_stored_rollups_merge_in_sql_like_one_aggregate(database_url: str) -> None:
    """The ON CONFLICT merge gives the buckets of one aggregate of everything, however batched."""
    rng = np.random.default_rng(1)
    n = 3000
    ranks = rng.integers(0, 2, size=n).astype(np.int64)
    steps = rng.permutation(n).astype(np.int64)
    values = rng.normal(size=n).round(1)  # ties: the earlier step must win on both databases
    values[[5, 50, 500]] = [math.nan, math.inf, -math.inf]
    upgrade(database_url)
    db = Database(database_url)
    try:
        with db.write_session() as session:
            runs.create_or_get_run(session, "merge", name=None, project=None, config=None, escalation_start_epoch=None)
        for chunk in np.array_split(rng.permutation(n), 9):  # out of order, nine transactions
            with db.write_session() as session:
                fold_readings(session, "merge", {"loss": Readings(ranks[chunk], steps[chunk], values[chunk])})
        with db.read_session() as session:
            stored = {(row.width, row.rank, row.bucket): Bucket(*(getattr(row, name) for name in BUCKET_FIELDS))
                      for row in session.scalars(select(SeriesRollup).where(SeriesRollup.run_id == "merge"))}
    finally:
        db.dispose()
    expected = {(width, rank, bucket): stats for width in WIDTHS
                for (rank, bucket), stats in aggregate(Readings(ranks, steps, values), width).items()}
    assert stored == expected


def test_pruned_raw_rows_fall_back_to_fine_buckets(tmp_path: Path) -> None:
    db = _database(tmp_path)
    _store(db, "r", [DiagnosticRecord.model_validate(r) for r in records(0, 3000)])
    with db.write_session() as session:  # what retention does: whole 64-step buckets go
        session.connection().exec_driver_sql("DELETE FROM diagnostics WHERE step < 1536")
    with db.read_session() as session:
        series = read_series(session, runs.get_run(session, "r"), SeriesWindow(("loss",), 5000, None, 1000, 2500))
    loss = series["loss"]
    assert loss["source"] == "raw"
    assert min(loss["steps"]) < 1100 and DIP_STEP in loss["steps"]  # from buckets
    assert [s for s in loss["steps"] if s >= 1536] == [s for s in range(1536, 2501) if s != INF_STEP]
    assert (NAN_STEP, "NaN") in {(p["step"], p["value"]) for p in loss["nonfinite"]}
    db.dispose()


def _database(tmp_path: Path) -> Database:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    db = Database(url)
    with db.write_session() as session:
        runs.create_or_get_run(session, "r", name=None, project=None, config={}, escalation_start_epoch=None)
    return db


def _store(db: Database, run_id: str, rows: list[DiagnosticRecord]) -> None:
    with db.write_session() as session:
        run = runs.get_run(session, run_id, lock=True)
        update_rollups(session, run_id, insert_records(session, run, rows).new_records)


# --- a million batches on SQLite ---------------------------------------------------------------


def load_million(url: str, run_id: str, steps: int = 1_000_000) -> None:
    """Bulk-load ``steps`` batches of every reading straight into SQLite, then rebuild rollups."""
    upgrade(url)
    db = Database(url)
    with db.write_session() as session:
        runs.create_or_get_run(session, run_id, name=run_id, project=None, config={}, escalation_start_epoch=None)
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(scale=0.01, size=(steps, len(READING_NAMES))), axis=0) + 1.0
    walk[654_321, READING_NAMES.index("loss")] = 1e6  # the spike a chart must show
    columns = ", ".join(("run_id", "rank", "step", "epoch", "nan_mask", *READING_NAMES))
    marks = ", ".join("?" * (5 + len(READING_NAMES)))
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    conn.execute("PRAGMA journal_mode=WAL")
    for start in range(0, steps, 100_000):
        block = walk[start:start + 100_000].tolist()
        conn.executemany(f"INSERT INTO diagnostics ({columns}) VALUES ({marks})",
                         ((run_id, 0, start + i, (start + i) // 1000, 0, *row) for i, row in enumerate(block)))
    conn.execute("UPDATE runs SET last_step = ?, last_epoch = ?, record_count = ? WHERE run_id = ?",
                 (steps - 1, (steps - 1) // 1000, steps, run_id))
    conn.commit()
    conn.close()
    with db.write_session() as session:
        rebuild_rollups(session, run_id)
    db.dispose()


@pytest.mark.slow
def test_million_batch_run_series_reads_rollups_and_zooms_to_raw(tmp_path: Path, token: str) -> None:
    # How fast these answers are is a benchmark's figure (benchmarks/series_chart.py, 1M records),
    # not a test's: this checks what they hold.
    url = f"sqlite:///{tmp_path / 'million.db'}"
    load_million(url, "big")
    live = LiveService(url, token, tmp_path / "service.log").start()
    try:
        for metrics in ("loss", ",".join(READING_NAMES)):
            loss = get_series(live, "big", metrics=metrics)["series"]["loss"]
            assert loss["source"].startswith("rollup:") and loss["points_in_window"] == 1_000_000
            assert 1e6 in loss["values"] and len(loss["steps"]) <= 2000
        zoom = get_series(live, "big", metrics="loss", step_min=654_000, step_max=655_000)["series"]["loss"]
        assert zoom["source"] == "raw" and 1e6 in zoom["values"]
    finally:
        live.close()
