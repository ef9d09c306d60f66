"""Migration 0008_rlan_readings keeps what was stored: segment 0, its run_segments row, closed epochs."""

from __future__ import annotations

from sqlalchemy import text

from monitor.store.database import make_engine
from monitor.store.migrate import upgrade


def _sql(url: str, *statements: str) -> list[list[tuple]]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            return [list(conn.execute(text(statement))) if statement.startswith("SELECT") else
                    (conn.execute(text(statement)) and []) for statement in statements]
    finally:
        engine.dispose()


def test_stored_runs_get_segment_zero_and_their_closed_epoch(database_url: str) -> None:
    upgrade(database_url, "0004")
    _sql(database_url,
         "INSERT INTO runs (run_id, name, project, config, created_at, updated_at, record_count, decision, health,"
         " decision_version) VALUES ('old', 'old', 'p', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 3, 'continue',"
         " 'ok', 0)",
         "INSERT INTO diagnostics (run_id, rank, step, epoch, nan_mask) VALUES ('old', 0, 5, 0, 0),"
         " ('old', 0, 9, 1, 0), ('old', 1, 7, 1, 0)",
         "INSERT INTO epochs (run_id, rank, epoch, nan_mask, closed_at) VALUES ('old', 0, 0, 0, CURRENT_TIMESTAMP),"
         " ('old', 0, 1, 0, CURRENT_TIMESTAMP)")
    upgrade(database_url)
    segments, rows, runs = _sql(
        database_url,
        "SELECT rank, segment, session, first_step, last_step FROM run_segments ORDER BY rank",
        "SELECT DISTINCT segment FROM diagnostics",
        "SELECT closed_epoch FROM runs")
    assert segments == [(0, 0, None, 5, 9), (1, 0, None, 7, 7)]
    assert rows == [(0,)] and runs == [(1,)]
    # A resumed step under the old uniqueness would clash; in a new segment it is stored.
    _sql(database_url, "INSERT INTO diagnostics (run_id, rank, step, segment, epoch, nan_mask)"
                       " VALUES ('old', 0, 5, 1, 0, 0)")
