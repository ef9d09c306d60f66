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
