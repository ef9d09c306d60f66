"""the RLAN trainer's readings, epoch extras, and run segments (issue 18)

Revision ID: 0008_rlan_readings
Revises: 0004
Create Date: 2026-12-04 20:30:00

- ``diagnostics`` gains the eight per-batch readings of design section 1 (nullable doubles;
  NaN is NULL plus a ``nan_mask`` bit, as for the older readings: bits 11-18).
- ``epochs`` gains ``extra`` (JSON): the trainer's further epoch figures, numbers or short
  vectors, NaN spelled as a string. Existing epochs have none (NULL).
- ``runs`` gains ``closed_epoch``, the highest epoch closed by a summary (the escalation
  question's default epoch is the next one), filled from the stored epochs. Stored
  decision answers are left as they are: the next write of each run rewrites its answer.
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0008_rlan_readings'
down_revision = '0004'
branch_labels = None
depends_on = None

NEW_READINGS = (
    'attention_max_mean', 'attention_peak_ratio', 'attention_entropy_norm', 'stop_logit_mean',
    'stop_logit_abs_mean', 'stop_prob_mean', 'lora_norm_preclamp_mean', 'lora_norm_preclamp_max',
)


def upgrade() -> None:
    with op.batch_alter_table('diagnostics') as batch_op:
        for name in NEW_READINGS:
            batch_op.add_column(sa.Column(name, sa.Double(), nullable=True))
    op.add_column('epochs', sa.Column('extra', sa.JSON(), nullable=True))
    op.add_column('runs', sa.Column('closed_epoch', sa.BigInteger(), nullable=True))
    op.execute('UPDATE runs SET closed_epoch = (SELECT max(epochs.epoch) FROM epochs '
               'WHERE epochs.run_id = runs.run_id)')


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('closed_epoch')
    with op.batch_alter_table('epochs') as batch_op:
        batch_op.drop_column('extra')
    with op.batch_alter_table('diagnostics') as batch_op:
        for name in NEW_READINGS:
            batch_op.drop_column(name)
