"""idempotency_keys: a key is claimed (status and response NULL) before its request is processed

Two concurrent requests under one new Idempotency-Key with different bodies
were both ingested (7 of 8 trials), the one answered 409 included: the key
was only looked up before the work and written after it. Now the first
request inserts a claim row before it does anything, the other finds it and
gets a 409, and the claimant fills in status and response when it answers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("idempotency_keys", "status", existing_type=sa.Integer(), nullable=True)
    op.alter_column("idempotency_keys", "response", existing_type=postgresql.JSONB(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_keys WHERE status IS NULL")
    op.alter_column("idempotency_keys", "response", existing_type=postgresql.JSONB(), nullable=False)
    op.alter_column("idempotency_keys", "status", existing_type=sa.Integer(), nullable=False)
