"""rules as data: a definition digest per rule state, longer metric names on rule events

Revision ID: 0007_rules_data
Revises: 0004
Create Date: 2026-12-04 21:00:00

Rule states now carry the digest of the rule definition + resolved params they were built
under (``rule_states.digest``); a changed definition resets the state. Stored states of
the shipped rules keep status, cursors and counts; their ``memory`` is converted where the
layout is the same and reset where it changed (lora_growth's window moved under the
detector, accuracy_drop's EMA under the reducer, stop_saturation now reads the stop-logit
mean), with a note saying so. The digest starts NULL: the engine adopts such states.
Rule events name the expression that was read, which can be longer than 64 characters.
"""
from __future__ import annotations

import json

from alembic import op
import sqlalchemy as sa


revision = '0007_rules_data'
down_revision = '0006_webhook_claims'
branch_labels = None
depends_on = None

NOTE = "migration 0007: rule memory reset (new rules-file layout)"
# Old memory key -> new place, for rules whose working state has the same meaning.
_CONVERT = {
    "lora_norm": {}, "attention_weak": {}, "attention_collapse": {}, "logit_range": {},
    "nan_streak": {}, "grad_explosion": {},
}


def convert_payload(rule: str, payload: dict) -> dict:
    """The payload in the new layout: bound rules keep their (metric-only) memory, others reset."""
    payload = dict(payload or {})
    memory = dict(payload.get("memory") or {})
    if rule in _CONVERT:
        payload["memory"] = {key: value for key, value in memory.items() if key == "metric"}
    else:
        payload["memory"] = {"note": NOTE}
        if rule == "stop_saturation" and payload.get("status") != "ok":
            # It judged the variance; the new rule judges the mean: an old episode says nothing now.
            payload.update(status="ok", since_step=None, since_epoch=None, breach_count=0, stable_count=0)
    payload["digest"] = None
    return payload


def upgrade() -> None:
    op.add_column('rule_states', sa.Column('digest', sa.String(length=64), nullable=True))
    with op.batch_alter_table('rule_events') as batch_op:
        batch_op.alter_column('metric', existing_type=sa.String(length=64), type_=sa.String(length=200),
                              existing_nullable=False)
    conn = op.get_bind()
    table = sa.table('rule_states', sa.column('id', sa.BigInteger), sa.column('rule', sa.String),
                     sa.column('status', sa.String), sa.column('payload', sa.JSON))
    for row_id, rule, payload in conn.execute(sa.select(table.c.id, table.c.rule, table.c.payload)).fetchall():
        data = json.loads(payload) if isinstance(payload, str) else payload
        new = convert_payload(rule, data or {})
        conn.execute(table.update().where(table.c.id == row_id).values(payload=new, status=new.get("status", "ok")))


def downgrade() -> None:
    with op.batch_alter_table('rule_events') as batch_op:
        batch_op.alter_column('metric', existing_type=sa.String(length=200), type_=sa.String(length=64),
                              existing_nullable=False)
    with op.batch_alter_table('rule_states') as batch_op:
        batch_op.drop_column('digest')
