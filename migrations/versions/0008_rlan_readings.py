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
- ``diagnostics`` gains ``segment`` (0 for every stored row) and its uniqueness becomes
  (run, rank, step, segment); ``run_segments`` lists each rank's segments (the session
  that opened it, its first and last step), filled with segment 0 of every stored rank.
  On SQLite the diagnostics table is rebuilt (a unique constraint cannot be altered).
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0008_rlan_readings'
down_revision = '0007_rules_data'
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
        batch_op.add_column(sa.Column('segment', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_constraint('uq_diagnostics_run_id_rank_step', type_='unique')
        batch_op.create_unique_constraint('uq_diagnostics_run_id_rank_step_segment',
                                          ['run_id', 'rank', 'step', 'segment'])
    op.create_table(
        'run_segments',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.String(length=200), nullable=False),
        sa.Column('rank', sa.Integer(), nullable=False),
        sa.Column('segment', sa.Integer(), nullable=False),
        sa.Column('session', sa.String(length=100), nullable=True),
        sa.Column('first_step', sa.BigInteger(), nullable=True),
        sa.Column('last_step', sa.BigInteger(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.run_id'], name=op.f('fk_run_segments_run_id_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_run_segments')),
        sa.UniqueConstraint('run_id', 'rank', 'segment', name=op.f('uq_run_segments_run_id_rank_segment')),
        sa.UniqueConstraint('run_id', 'rank', 'session', name=op.f('uq_run_segments_run_id_rank_session')),
    )
    op.execute('INSERT INTO run_segments (run_id, rank, segment, session, first_step, last_step, started_at) '
               'SELECT run_id, rank, 0, NULL, min(step), max(step), CURRENT_TIMESTAMP FROM diagnostics '
               'GROUP BY run_id, rank')
    op.add_column('epochs', sa.Column('extra', sa.JSON(), nullable=True))
    op.add_column('runs', sa.Column('closed_epoch', sa.BigInteger(), nullable=True))
    op.execute('UPDATE runs SET closed_epoch = (SELECT max(epochs.epoch) FROM epochs '
               'WHERE epochs.run_id = runs.run_id)')


def downgrade() -> None:
    op.drop_table('run_segments')
    op.execute('DELETE FROM diagnostics WHERE segment > 0')  # (run, rank, step) must be unique again
    with op.batch_alter_table('runs') as batch_op:
        batch_op.drop_column('closed_epoch')
    with op.batch_alter_table('epochs') as batch_op:
        batch_op.drop_column('extra')
    with op.batch_alter_table('diagnostics') as batch_op:
        batch_op.drop_constraint('uq_diagnostics_run_id_rank_step_segment', type_='unique')
        batch_op.create_unique_constraint('uq_diagnostics_run_id_rank_step', ['run_id', 'rank', 'step'])
        batch_op.drop_column('segment')
        for name in NEW_READINGS:
            batch_op.drop_column(name)
