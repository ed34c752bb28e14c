"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


UNACCENT_FN = """
CREATE FUNCTION empressa_unaccent(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN public.unaccent('public.unaccent'::regdictionary, $1)
"""

JOIN_FN = """
CREATE FUNCTION empressa_join(text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN array_to_string($1, ' ')
"""

SEARCH_VECTOR = """
ALTER TABLE assets ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', empressa_unaccent(title)), 'A') ||
    setweight(to_tsvector('simple', empressa_unaccent(empressa_join(tags))), 'B') ||
    setweight(to_tsvector('simple', empressa_unaccent(description)), 'C')
) STORED
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    op.execute(UNACCENT_FN)
    op.execute(JOIN_FN)
    op.execute("CREATE SEQUENCE asset_change_seq")
    op.create_table(
        "activity",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("did", sa.Text(), nullable=True),
        sa.Column("entry_hash", sa.LargeBinary(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("activity_did_idx", "activity", ["did", "id"], unique=False)
    op.create_index("activity_kind_idx", "activity", ["kind", "id"], unique=False)
    op.create_index("activity_uri_idx", "activity", ["uri", "id"], unique=False)
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("author", sa.LargeBinary(), nullable=False),
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("entry_hash", sa.LargeBinary(), nullable=False),
        sa.Column("put_hash", sa.LargeBinary(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("license", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=30, scale=10), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("media_cid", sa.Text(), nullable=True),
        sa.Column("media_mime", sa.Text(), nullable=True),
        sa.Column("media_type", sa.Text(), nullable=True),
        sa.Column(
            "body",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("versions", sa.Integer(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("updated_ts", sa.BigInteger(), nullable=False),
        sa.Column("hidden", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("chain_status", sa.Text(), server_default="listed", nullable=False),
        sa.Column(
            "onchain",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "verification",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "change_seq",
            sa.BigInteger(),
            server_default=sa.text("nextval('asset_change_seq')"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("author", "key", name="assets_author_key_key"),
        sa.UniqueConstraint("uri"),
    )
    op.execute(SEARCH_VECTOR)
    op.create_index("assets_search_idx", "assets", ["search"], unique=False, postgresql_using="gin")
    op.create_index("assets_change_seq_idx", "assets", ["change_seq"], unique=True)
    op.create_index("assets_created_idx", "assets", ["created_ts", "id"], unique=False)
    op.create_index("assets_did_idx", "assets", ["did", "id"], unique=False)
    op.create_index("assets_tags_idx", "assets", ["tags"], unique=False, postgresql_using="gin")
    op.create_index(
        "assets_title_trgm_idx",
        "assets",
        [sa.literal_column("lower(title) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
    op.create_table(
        "attest_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_hash", sa.LargeBinary(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "authors",
        sa.Column("author", sa.LargeBinary(), nullable=False),
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.LargeBinary(), nullable=False),
        sa.Column("forked_seq", sa.BigInteger(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("author"),
        sa.UniqueConstraint("did"),
    )
    op.create_table(
        "chain_cursors",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", sa.LargeBinary(), nullable=True),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_table(
        "forks",
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("author", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("conflicts_with", sa.LargeBinary(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_index("forks_author_idx", "forks", ["author", "seq"], unique=False)
    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "moderation_labels",
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), server_default="", nullable=False),
        sa.Column("created_by", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("uri", "label"),
    )
    op.create_table(
        "pending",
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("author", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("hash"),
    )
    op.create_index("pending_author_seq_idx", "pending", ["author", "seq"], unique=False)
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("author", sa.LargeBinary(), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("times_seen", sa.Integer(), server_default="1", nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
    )
    op.create_index("quarantine_received_idx", "quarantine", ["last_seen"], unique=False)
    op.create_table(
        "entries",
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.Column("author", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["author"], ["authors.author"], initially="DEFERRED", deferrable=True),
        sa.PrimaryKeyConstraint("hash"),
        sa.UniqueConstraint("author", "seq", name="entries_author_seq_key"),
    )


def downgrade() -> None:
    op.drop_table("entries")
    op.drop_index("quarantine_received_idx", table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_index("pending_author_seq_idx", table_name="pending")
    op.drop_table("pending")
    op.drop_table("moderation_labels")
    op.drop_table("idempotency_keys")
    op.drop_index("forks_author_idx", table_name="forks")
    op.drop_table("forks")
    op.drop_table("chain_cursors")
    op.drop_table("authors")
    op.drop_table("attest_outbox")
    op.drop_index("assets_title_trgm_idx", table_name="assets", postgresql_using="gin")
    op.drop_index("assets_tags_idx", table_name="assets", postgresql_using="gin")
    op.drop_index("assets_did_idx", table_name="assets")
    op.drop_index("assets_created_idx", table_name="assets")
    op.drop_index("assets_change_seq_idx", table_name="assets")
    op.drop_table("assets")
    op.execute("DROP SEQUENCE asset_change_seq")
    op.execute("DROP FUNCTION empressa_join(text[])")
    op.execute("DROP FUNCTION empressa_unaccent(text)")
    op.drop_table("api_keys")
    op.drop_index("activity_uri_idx", table_name="activity")
    op.drop_index("activity_kind_idx", table_name="activity")
    op.drop_index("activity_did_idx", table_name="activity")
    op.drop_table("activity")
