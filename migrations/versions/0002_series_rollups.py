"""series rollups for fast charts of long runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:30:00

Runs ingested before this revision have no rollups; the series reader then falls back
to raw rows (correct, only slower) until ``monitor.store.rollups.rebuild_rollups`` is run.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('series_rollups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=200), nullable=False),
    sa.Column('metric', sa.String(length=120), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('bucket', sa.BigInteger(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('min_value', sa.Double(), nullable=True),
    sa.Column('min_step', sa.BigInteger(), nullable=True),
    sa.Column('max_value', sa.Double(), nullable=True),
    sa.Column('max_step', sa.BigInteger(), nullable=True),
    sa.Column('nonfinite_count', sa.Integer(), nullable=False),
    sa.Column('nonfinite_step', sa.BigInteger(), nullable=True),
    sa.Column('nonfinite_value', sa.String(length=16), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], name=op.f('fk_series_rollups_run_id_runs'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_series_rollups')),
    sa.UniqueConstraint('run_id', 'width', 'metric', 'rank', 'bucket',
                        name=op.f('uq_series_rollups_run_id_width_metric_rank_bucket'))
    )


def downgrade() -> None:
    op.drop_table('series_rollups')
