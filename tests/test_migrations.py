"""Every schema change is an Alembic migration: the migrated schema matches the models.

Runs on SQLite and PostgreSQL. A model change without its migration makes Alembic's
autogenerate comparison non-empty, and this test names the differences. Downgrading to
the first revision and upgrading again must also work (a deploy can be rolled back).
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import monitor.store.rollup_models  # noqa: F401  (registers the rollup tables on Base.metadata)
from monitor.store.database import make_engine
from monitor.store.migrate import alembic_config, upgrade
from monitor.store.models import Base


def _differences(url: str) -> list[object]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    upgrade(database_url)
    assert _differences(database_url) == []


def test_downgrade_and_upgrade_again(database_url: str) -> None:
    from alembic import command

    upgrade(database_url)
    command.downgrade(alembic_config(database_url), "0002")
    engine = make_engine(database_url, pool_size=1)
    try:
        assert "decision_body" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()
    upgrade(database_url)
    assert _differences(database_url) == []


def test_0007_converts_stored_rule_states(database_url: str) -> None:
    """Old states keep status and cursors; memory of rules whose layout changed is reset with a note."""
    import json

    from alembic import command
    from sqlalchemy import text

    command.upgrade(alembic_config(database_url), "0004")
    engine = make_engine(database_url, pool_size=1)
    old = {
        "lora_growth": {"rule": "lora_growth", "status": "firing", "last_step": 99, "breach_count": 1,
                        "memory": {"epoch": 3, "sum": 4.0, "n": 3, "bad": 0, "means": [[0, 1.0]]}},
        "attention_collapse": {"rule": "attention_collapse", "status": "pending", "last_step": 99, "breach_count": 2,
                               "memory": {"metric": "attention_entropy"}},
        "stop_saturation": {"rule": "stop_saturation", "status": "firing", "last_step": 99, "memory": {}},
    }
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO runs (run_id, name, project, config, record_count, decision, health, created_at, updated_at, "
                              "decision_version) VALUES ('r', '', 'default', '{}', 0, 'continue', 'ok', CURRENT_TIMESTAMP, "
                              "CURRENT_TIMESTAMP, 0)"))
            for rule, payload in old.items():
                conn.execute(text("INSERT INTO rule_states (run_id, rule, rank, status, payload, updated_at) "
                                  "VALUES ('r', :rule, 0, :status, :payload, CURRENT_TIMESTAMP)"),
                             {"rule": rule, "status": payload["status"], "payload": json.dumps(payload)})
        upgrade(database_url)
        with engine.connect() as conn:
            rows = {rule: (status, payload if isinstance(payload, dict) else json.loads(payload), digest)
                    for rule, status, payload, digest in conn.execute(
                        text("SELECT rule, status, payload, digest FROM rule_states"))}
    finally:
        engine.dispose()
    status, payload, digest = rows["lora_growth"]
    assert status == "firing" and payload["last_step"] == 99 and digest is None
    assert payload["memory"] == {"note": "migration 0007: rule memory reset (new rules-file layout)"}
    status, payload, _ = rows["attention_collapse"]
    assert status == "pending" and payload["breach_count"] == 2 and payload["memory"] == {"metric": "attention_entropy"}
    status, payload, _ = rows["stop_saturation"]
    assert status == "ok" and payload["status"] == "ok", "a variance episode says nothing about the mean rule"
