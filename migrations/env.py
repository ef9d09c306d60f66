"""Alembic environment: runs migrations on the URL given by the caller or the settings."""

from __future__ import annotations

from alembic import context

from monitor.settings import Settings
from monitor.store.database import make_engine
import monitor.store.rollup_models  # noqa: F401  (registers the rollup tables)
from monitor.store.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    """-x url=... wins, then an explicit option set by monitor.store.migrate, then settings."""
    x_args = context.get_x_argument(as_dictionary=True)
    return x_args.get("url") or config.get_main_option("monitor.url") or Settings().database_url


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``)."""
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Apply migrations over a live connection (batch mode keeps SQLite ALTERs working)."""
    engine = make_engine(_database_url(), pool_size=1)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
