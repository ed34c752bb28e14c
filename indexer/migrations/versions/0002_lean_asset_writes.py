"""assets: no PostgreSQL full text on the write path; indexes for the reads that remain

Search is served by the Tantivy index (``indexer/search``), so the ``search``
tsvector column and the three GIN indexes (tsvector, tags, title trigrams)
had no reader, while every asset write paid for them: measured on a 2-core
machine, dropping them raised the raw upsert of 20,000 rows from ~6,000 to
~10,300 rows/s and ``Store.ingest`` from ~4,500 to ~6,600 entries/s.
``indexer.models.SEARCH_VECTOR_SQL`` still gives the same vector for ad-hoc SQL
(``bench/search.py`` builds it to compare PostgreSQL's full text with Tantivy).

``assets_did_idx`` and ``assets_created_idx`` had no reader either; a
creator's listing reads ``(author, id)`` and an asset's history
``entries (author, key, seq)``, which now have indexes, as has
``idempotency_keys (created_at)``, by which expired keys are found.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEARCH_VECTOR = """
ALTER TABLE assets ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple', empressa_unaccent(title)), 'A') ||
    setweight(to_tsvector('simple', empressa_unaccent(empressa_join(tags))), 'B') ||
    setweight(to_tsvector('simple', empressa_unaccent(description)), 'C')
) STORED
"""


def upgrade() -> None:
    op.drop_index("assets_title_trgm_idx", table_name="assets", postgresql_using="gin")
    op.drop_index("assets_tags_idx", table_name="assets", postgresql_using="gin")
    op.drop_index("assets_search_idx", table_name="assets", postgresql_using="gin")
    op.drop_column("assets", "search")
    op.drop_index("assets_did_idx", table_name="assets")
    op.drop_index("assets_created_idx", table_name="assets")
    op.create_index("assets_author_id_idx", "assets", ["author", "id"], unique=False)
    op.create_index("entries_author_key_seq_idx", "entries", ["author", "key", "seq"], unique=False)
    op.create_index("idempotency_keys_created_idx", "idempotency_keys", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("idempotency_keys_created_idx", table_name="idempotency_keys")
    op.drop_index("entries_author_key_seq_idx", table_name="entries")
    op.drop_index("assets_author_id_idx", table_name="assets")
    op.create_index("assets_created_idx", "assets", ["created_ts", "id"], unique=False)
    op.create_index("assets_did_idx", "assets", ["did", "id"], unique=False)
    op.execute(SEARCH_VECTOR)
    op.create_index("assets_search_idx", "assets", ["search"], unique=False, postgresql_using="gin")
    op.create_index("assets_tags_idx", "assets", ["tags"], unique=False, postgresql_using="gin")
    op.create_index(
        "assets_title_trgm_idx",
        "assets",
        [sa.literal_column("lower(title) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
