"""a version number on the stored decision answer

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 19:30:00

Every transaction that rewrites ``runs.decision_body`` also increments
``runs.decision_version`` (under the run's row lock), so the per-process copies of the
answers (``monitor.store.decision_board``) can tell a newer answer from an older one,
whichever order they learn them in. Existing runs start at 0.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('decision_version', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('decision_version')
