"""pin queue: the CIDs current assets name, and a durable pin job for each

* ``asset_media``: per current (not deleted, not moderated) asset, the CID of each
  of its ``media``, ``preview`` and ``artwork``; derived from ``assets.body`` by the
  pin worker (``empressa indexer pin``), which follows ``assets.change_seq`` from
  ``pin_cursors`` (one row, ``assets``, from 0: the first run derives every asset).
* ``pins``: one row per CID the operator pins, its status (``pending``, ``pinned``,
  ``failed``), attempts, failures, last error, when it is due, its lease (a worker
  killed mid-job leaves it to be claimed again when the lease ends), and since when
  no current asset names it (unpinned after the grace period).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "asset_media",
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("asset_id", "role"),
    )
    op.create_index("asset_media_cid_idx", "asset_media", ["cid"])
    op.create_table(
        "pin_cursors",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute("INSERT INTO pin_cursors (name, position) VALUES ('assets', 0)")
    op.create_table(
        "pins",
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("lease_token", sa.Text(), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unwanted_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("cid"),
    )
    op.create_index("pins_due_idx", "pins", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("pins_due_idx", table_name="pins")
    op.drop_table("pins")
    op.drop_table("pin_cursors")
    op.drop_index("asset_media_cid_idx", table_name="asset_media")
    op.drop_table("asset_media")
