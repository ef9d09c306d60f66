"""the escalation decision answer, stored with the run

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 15:00:00

``GET /escalation/decision`` serves ``runs.decision_body`` with one primary-key read.
Existing runs start with NULL; the endpoint then computes the answer from the rule states
(as before this revision) until the run's next ingest, epoch or PUT stores it.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('decision_body', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('decision_body')
