"""chain reconciliation: processed blocks, registrations, payments, outbox subjects

* ``chain_blocks``: each processed block's number, hash and parent hash per
  chain source, so a reorg is seen (the stored tip is no longer on the chain)
  and walked back to the common ancestor.
* ``registrations``: every ``AssetRegistered`` log applied, by (source, tx,
  log index), with the block it came from (a reorg deletes the dropped
  blocks' rows). ``uri``/``entry_seq`` are NULL until the registered entry
  hash is indexed (a registration may arrive before its record); ``status``
  is ``pending`` until matched, then ``verified``, ``mismatch`` or ``unbound``.
* ``payments``: every payment a Stellar source saw to an indexed payout
  account, by (source, payment id), with what it was judged: ``licensed``,
  ``underpaid``, ``wrong-asset``, ``wrong-memo``, ``failed``.
* ``assets.licenses``: how many payments licensed the asset (a search facet,
  ``status=licensed``).
* ``attest_outbox`` gains ``subject`` and ``status`` (the attestation it will
  publish) and the index the bridge's publisher reads unpublished rows by.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_blocks",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("parent_hash", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("source", "number"),
    )
    op.create_table(
        "registrations",
        sa.Column("source", sa.Text(), nullable=False),  # CAIP-2, e.g. eip155:31337
        sa.Column("tx_hash", sa.LargeBinary(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.LargeBinary(), nullable=False),
        sa.Column("contract", sa.LargeBinary(), nullable=False),
        sa.Column("asset_id", sa.Numeric(78, 0), nullable=False),
        sa.Column("record_hash", sa.LargeBinary(), nullable=False),
        sa.Column("owner", sa.LargeBinary(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("entry_seq", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("matched_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source", "tx_hash", "log_index"),
    )
    op.create_index("registrations_record_hash_idx", "registrations", ["record_hash"])
    op.create_index("registrations_uri_idx", "registrations", ["uri"])
    op.create_index("registrations_block_idx", "registrations", ["source", "block_number"])
    op.create_index(
        "registrations_pending_idx",
        "registrations",
        ["record_hash"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "payments",
        sa.Column("source", sa.Text(), nullable=False),  # e.g. stellar:testnet
        sa.Column("payment_id", sa.Text(), nullable=False),  # Horizon operation id (its paging token)
        sa.Column("tx_hash", sa.Text(), nullable=False),
        sa.Column("from_account", sa.Text(), nullable=False),
        sa.Column("to_account", sa.Text(), nullable=False),
        sa.Column("asset", sa.Text(), nullable=False),  # XLM, or CODE:ISSUER
        sa.Column("amount", sa.Numeric(30, 7), nullable=False),
        sa.Column("memo", sa.LargeBinary(), nullable=True),  # a hash memo's 32 bytes
        sa.Column("uri", sa.Text(), nullable=True),  # the asset the memo names, when it names one
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("source", "payment_id"),
    )
    op.create_index("payments_uri_idx", "payments", ["uri"])
    op.add_column("assets", sa.Column("licenses", sa.Integer(), server_default="0", nullable=False))
    op.add_column("attest_outbox", sa.Column("subject", sa.LargeBinary(), nullable=True))
    op.add_column("attest_outbox", sa.Column("status", sa.Text(), nullable=True))
    op.add_column(
        "attest_outbox",
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.create_index(
        "attest_outbox_unpublished_idx",
        "attest_outbox",
        ["id"],
        postgresql_where=sa.text("published_hash IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("attest_outbox_unpublished_idx", table_name="attest_outbox")
    op.drop_column("attest_outbox", "data")
    op.drop_column("attest_outbox", "status")
    op.drop_column("attest_outbox", "subject")
    op.drop_column("assets", "licenses")
    op.drop_index("payments_uri_idx", table_name="payments")
    op.drop_table("payments")
    op.drop_index("registrations_pending_idx", table_name="registrations")
    op.drop_index("registrations_block_idx", table_name="registrations")
    op.drop_index("registrations_uri_idx", table_name="registrations")
    op.drop_index("registrations_record_hash_idx", table_name="registrations")
    op.drop_table("registrations")
    op.drop_table("chain_blocks")
