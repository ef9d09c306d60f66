"""One ``INSERT ... ON CONFLICT DO UPDATE`` that merges fresh buckets into stored ones.

Why in SQL: ingestion folds every batch into five bucket widths per metric. Reading the
touched rows back and updating them row by row cost more CPU than the insert of the raw
records itself, for the small batches trainers send every half second. The merge below
keeps the smallest and largest finite value with its step (compared as (value, step), the
order :func:`monitor.store.rollups.aggregate` sorts in, so ties resolve the same however
ingestion was batched), adds the counts and keeps the earliest non-finite reading, written
as ``CASE`` expressions and executed as one executemany; SQLite (3.24+) and PostgreSQL
share the syntax. Every ``SET`` expression reads the row's values from before the update,
as SQL specifies.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, and_, case, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from monitor.store.rollup_models import SeriesRollup

KEY_COLUMNS = ("run_id", "width", "metric", "rank", "bucket")


def _replaces(new: Any, old: Any, value: str, step: str, smaller: bool) -> ColumnElement[bool]:
    """Whether the fresh extreme wins, compared as (value, step)."""
    beats = (lambda a, b: a < b) if smaller else (lambda a, b: a > b)
    return and_(new.count > 0, or_(
        getattr(old, value).is_(None),
        beats(getattr(new, value), getattr(old, value)),
        and_(getattr(new, value) == getattr(old, value), beats(getattr(new, step), getattr(old, step))),
    ))


@lru_cache(maxsize=2)
def merge_statement(dialect: str) -> Insert:
    """The upsert for ``dialect`` ("sqlite" or "postgresql"), built once per process."""
    dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = dialect_insert(SeriesRollup.__table__)
    new, old = statement.excluded, SeriesRollup.__table__.c
    lower = _replaces(new, old, "min_value", "min_step", smaller=True)
    higher = _replaces(new, old, "max_value", "max_step", smaller=False)
    earlier = and_(new.nonfinite_count > 0, or_(old.nonfinite_step.is_(None), new.nonfinite_step < old.nonfinite_step))
    return statement.on_conflict_do_update(
        index_elements=[getattr(old, name) for name in KEY_COLUMNS],
        set_={
            "count": old.count + new.count,
            "min_value": case((lower, new.min_value), else_=old.min_value),
            "min_step": case((lower, new.min_step), else_=old.min_step),
            "max_value": case((higher, new.max_value), else_=old.max_value),
            "max_step": case((higher, new.max_step), else_=old.max_step),
            "nonfinite_count": old.nonfinite_count + new.nonfinite_count,
            "nonfinite_step": case((earlier, new.nonfinite_step), else_=old.nonfinite_step),
            "nonfinite_value": case((earlier, new.nonfinite_value), else_=old.nonfinite_value),
        },
    )
