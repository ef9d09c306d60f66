"""scrub receivers' error bodies from stored webhook delivery errors

Revision ID: 0006_webhook_claims
Revises: 0004
Create Date: 2026-12-04 20:50:00

Until now a failed attempt stored ``HTTP <status>: <up to 300 bytes of the receiver's
body>`` in ``webhook_deliveries.last_error``, readable by every API client via
``GET /api/v1/deliveries`` (issue 16.5). The worker now stores a short reason of its own
(``HTTP 500``); this rewrites existing rows the same way. No column changes; a downgrade
cannot bring the bodies back and does nothing.
"""
from __future__ import annotations

import re

from alembic import op
import sqlalchemy as sa


revision = '0006_webhook_claims'
down_revision = '0005_run_events'
branch_labels = None
depends_on = None

_HTTP_WITH_BODY = re.compile(r"^(HTTP \d{3})\b.+", re.DOTALL)
_deliveries = sa.table('webhook_deliveries', sa.column('id', sa.BigInteger()), sa.column('last_error', sa.Text()))


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_deliveries.c.id, _deliveries.c.last_error).where(_deliveries.c.last_error.like('HTTP %'))
    ).all()
    for row_id, error in rows:
        match = _HTTP_WITH_BODY.match(error)
        if match:
            bind.execute(_deliveries.update().where(_deliveries.c.id == row_id).values(last_error=match.group(1)))


def downgrade() -> None:
    pass
