"""run events (config changes) and the config digest

Revision ID: 0005_run_events
Revises: 0004
Create Date: 2026-12-04 20:30:00

``run_events`` keeps what was done to a run (today: ``config.changed`` with a bounded
diff), so a second PUT no longer replaces the config without a trace.
``runs.config_sha256`` is the SHA-256 of the config's canonical JSON: ingestion caches
thresholds by it and no longer loads the config. Existing runs get theirs here (the same
canonical JSON as ``monitor.schemas.config_tree.canonical_json``, copied so this revision
never changes with the code).
"""
from __future__ import annotations

import hashlib
import json

from alembic import op
import sqlalchemy as sa


revision = '0005_run_events'
down_revision = '0004'
branch_labels = None
depends_on = None


def _sha256(config: object) -> str:
    text = json.dumps(config or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _backfill() -> None:
    runs = sa.table('runs', sa.column('run_id', sa.String), sa.column('config', sa.JSON),
                    sa.column('config_sha256', sa.String))
    conn = op.get_bind()
    for run_id, config in conn.execute(sa.select(runs.c.run_id, runs.c.config)).all():
        conn.execute(runs.update().where(runs.c.run_id == run_id).values(config_sha256=_sha256(config)))


def upgrade() -> None:
    op.add_column('runs', sa.Column('config_sha256', sa.String(length=64), nullable=True))
    _backfill()
    op.create_table('run_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], name=op.f('fk_run_events_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run_events'))
    )
    with op.batch_alter_table('run_events', schema=None) as batch_op:
        batch_op.create_index('ix_run_events_run_id_id', ['run_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('run_events', schema=None) as batch_op:
        batch_op.drop_index('ix_run_events_run_id_id')
    op.drop_table('run_events')
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('config_sha256')
