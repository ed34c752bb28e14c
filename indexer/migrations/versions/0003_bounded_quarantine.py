"""quarantine: no raw bytes past the 16 KiB entry limit, a size per row, running sums per source

An input larger than an entry can be (16 KiB) was stored whole: 16 x 1 MB of
random CBOR per anonymous ``POST /v1/entries`` stored 16 MB, about 1.9 GB a
minute per client address at the anonymous rate limit. Now such a row keeps
its code, reason, digest and ``size`` and ``raw`` is NULL, and
``quarantine_usage`` holds what each source (and the whole table, source
``*``) has stored, which the bounds of ``indexer.store.quarantine`` are
checked against. The upgrade drops the raw bytes of rows already over the
limit and fills in the sums from what is left.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MAX_ENTRY_BYTES = 16 * 1024  # protocol.MAX_ENTRY_BYTES when this migration was written
ROW_OVERHEAD = 128  # indexer.store.quarantine.ROW_OVERHEAD when this migration was written
COST = f"coalesce(octet_length(raw), 0) + octet_length(reason) + octet_length(source) + {ROW_OVERHEAD}"


def upgrade() -> None:
    op.add_column("quarantine", sa.Column("size", sa.BigInteger(), nullable=True))
    op.execute("UPDATE quarantine SET size = octet_length(raw)")
    op.alter_column("quarantine", "size", nullable=False)
    op.alter_column("quarantine", "raw", existing_type=sa.LargeBinary(), nullable=True)
    op.execute(f"UPDATE quarantine SET raw = NULL WHERE octet_length(raw) > {MAX_ENTRY_BYTES}")
    op.create_table(
        "quarantine_usage",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.execute(
        f"INSERT INTO quarantine_usage (source, stored_bytes, row_count) "
        f"SELECT source, sum({COST}), count(*) FROM quarantine WHERE source <> '*' GROUP BY source "
        f"UNION ALL SELECT '*', coalesce(sum({COST}), 0), count(*) FROM quarantine"
    )


def downgrade() -> None:
    op.drop_table("quarantine_usage")
    op.execute("DELETE FROM quarantine WHERE raw IS NULL")
    op.alter_column("quarantine", "raw", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_column("quarantine", "size")
