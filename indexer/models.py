"""The indexer's PostgreSQL schema (SQLAlchemy 2 declarative models).

PostgreSQL is the source of truth; the Tantivy search index is derived from
``assets`` by following ``assets.change_seq``. Migrations under
``indexer/migrations/`` create exactly these tables; a test compares the two.

Ordering rule: every transaction that writes ``assets`` or ``activity`` first
takes the ingest advisory lock (:data:`INGEST_LOCK`), so ``change_seq`` and
``activity.id`` become visible in the order they were assigned. That is what
lets the search feeder and the SSE stream follow them by position without
ever skipping a row committed late.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    Sequence,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

INGEST_LOCK = 0x656D7072  # pg_advisory_xact_lock key held by every writer of assets/activity
ACTIVITY_CHANNEL = "empressa_activity"  # NOTIFY payload: the newest activity id
ASSETS_CHANNEL = "empressa_assets"  # NOTIFY payload: the newest assets.change_seq

asset_change_seq = Sequence("asset_change_seq")
# PostgreSQL's own full-text vector of an asset (title A > tags B > description C, accents
# folded). Not stored: search is served by Tantivy (migration 0002 says why). For ad-hoc SQL,
# and for bench/search.py, which adds it as a generated column to compare the two.
SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('simple', empressa_unaccent(title)), 'A') || "
    "setweight(to_tsvector('simple', empressa_unaccent(empressa_join(tags))), 'B') || "
    "setweight(to_tsvector('simple', empressa_unaccent(description)), 'C')"
)


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012
        dict[str, Any]: JSONB,
        bytes: LargeBinary,
        datetime: DateTime(timezone=True),
    }


class Author(Base):
    """One author's log as mirrored here; the head is the bridge's durable cursor."""

    __tablename__ = "authors"

    author: Mapped[bytes] = mapped_column(primary_key=True)  # Ed25519 public key, 32 bytes
    did: Mapped[str] = mapped_column(Text, unique=True)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[bytes]
    forked_seq: Mapped[int | None] = mapped_column(BigInteger)  # lowest seq with two entries
    first_seen: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class EntryRow(Base):
    """Every applied signed entry, raw bytes kept so anyone can re-verify it."""

    __tablename__ = "entries"
    __table_args__ = (
        UniqueConstraint("author", "seq", name="entries_author_seq_key"),
        Index("entries_author_key_seq_idx", "author", "key", "seq"),  # an asset's history
    )

    hash: Mapped[bytes] = mapped_column(primary_key=True)  # SHA-256 of raw
    author: Mapped[bytes] = mapped_column(ForeignKey("authors.author", deferrable=True, initially="DEFERRED"))
    seq: Mapped[int] = mapped_column(BigInteger)
    ts: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Asset(Base):
    """The current state of one asset: its latest put, unless a later delete."""

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("author", "key", name="assets_author_key_key"),
        Index("assets_change_seq_idx", "change_seq", unique=True),
        Index("assets_author_id_idx", "author", "id"),  # a creator's listing, newest first
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    author: Mapped[bytes]
    did: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    uri: Mapped[str] = mapped_column(Text, unique=True)
    entry_hash: Mapped[bytes]  # the entry that produced this state (put or delete)
    put_hash: Mapped[bytes | None]  # the latest asset.put (what an EVM registration names)
    seq: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    title: Mapped[str] = mapped_column(Text, server_default="")
    description: Mapped[str] = mapped_column(Text, server_default="")
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    license: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal | None] = mapped_column(Numeric(30, 10))
    currency: Mapped[str | None] = mapped_column(Text)
    media_cid: Mapped[str | None] = mapped_column(Text)
    media_mime: Mapped[str | None] = mapped_column(Text)
    media_type: Mapped[str | None] = mapped_column(Text)  # audio, image, video, …: the MIME major type
    body: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))  # the latest put body
    versions: Mapped[int] = mapped_column(Integer)
    created_ts: Mapped[int] = mapped_column(BigInteger)
    updated_ts: Mapped[int] = mapped_column(BigInteger)
    hidden: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))  # any moderation label
    # The asset's registration: listed (none), verified, mismatch or unbound (see indexer.chains).
    chain_status: Mapped[str] = mapped_column(Text, server_default="listed")
    licenses: Mapped[int] = mapped_column(Integer, server_default="0")  # payments that licensed it
    onchain: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    verification: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    change_seq: Mapped[int] = mapped_column(
        BigInteger, asset_change_seq, server_default=asset_change_seq.next_value()
    )


class Activity(Base):
    """What happened, in commit order: published, updated, deleted, registered, licensed, verified, …"""

    __tablename__ = "activity"
    __table_args__ = (
        Index("activity_uri_idx", "uri", "id"),
        Index("activity_did_idx", "did", "id"),
        Index("activity_kind_idx", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    uri: Mapped[str | None] = mapped_column(Text)
    did: Mapped[str | None] = mapped_column(Text)
    entry_hash: Mapped[bytes | None]
    seq: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Pending(Base):
    """Valid entries that arrived ahead of a gap in their author's log; applied once it fills."""

    __tablename__ = "pending"
    __table_args__ = (Index("pending_author_seq_idx", "author", "seq"),)

    hash: Mapped[bytes] = mapped_column(primary_key=True)
    author: Mapped[bytes]
    seq: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[bytes]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Fork(Base):
    """Proof of a fork: each conflicting entry, kept byte for byte."""

    __tablename__ = "forks"
    __table_args__ = (Index("forks_author_idx", "author", "seq"),)

    hash: Mapped[bytes] = mapped_column(primary_key=True)
    author: Mapped[bytes]
    seq: Mapped[int] = mapped_column(BigInteger)
    conflicts_with: Mapped[bytes | None]
    raw: Mapped[bytes]
    detected_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Quarantine(Base):
    """Everything refused, with its reason, stored once per distinct input, bounded and aged out
    (``indexer.store.quarantine``)."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("quarantine_received_idx", "last_seen"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    digest: Mapped[bytes] = mapped_column(unique=True)  # SHA-256 of raw (raw may not parse)
    author: Mapped[bytes | None]
    seq: Mapped[int | None] = mapped_column(BigInteger)
    code: Mapped[str] = mapped_column(Text)  # decode, schema, signature, timestamp, fork, …
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)  # "gossip:<peer>", "sync:<peer>", "http:<client>"
    raw: Mapped[bytes | None]  # the exact input; NULL when it was over 16 KiB (only digest and size kept)
    size: Mapped[int] = mapped_column(BigInteger)  # bytes of the input, whether or not raw is kept
    times_seen: Mapped[int] = mapped_column(Integer, server_default="1")
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(server_default=func.now())


class QuarantineUsage(Base):
    """Running sums of ``quarantine`` per source, and in total (source ``*``): what its bounds are checked
    against (``indexer.store.quarantine``)."""

    __tablename__ = "quarantine_usage"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)


class ChainCursor(Base):
    __tablename__ = "chain_cursors"

    source: Mapped[str] = mapped_column(Text, primary_key=True)  # e.g. "eip155:31337", "stellar:testnet"
    position: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[bytes | None]
    data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ChainBlock(Base):
    """A block a chain source processed: how a reorg is seen and walked back (migration 0005)."""

    __tablename__ = "chain_blocks"

    source: Mapped[str] = mapped_column(Text, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes]
    parent_hash: Mapped[bytes | None]


class Registration(Base):
    """One applied ``AssetRegistered`` log (migration 0005); ``uri`` is NULL until its entry is indexed."""

    __tablename__ = "registrations"
    __table_args__ = (
        Index("registrations_record_hash_idx", "record_hash"),
        Index("registrations_uri_idx", "uri"),
        Index("registrations_block_idx", "source", "block_number"),
        Index("registrations_pending_idx", "record_hash", postgresql_where=text("status = 'pending'")),
    )

    source: Mapped[str] = mapped_column(Text, primary_key=True)  # CAIP-2, e.g. "eip155:31337"
    tx_hash: Mapped[bytes] = mapped_column(primary_key=True)
    log_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[bytes]
    contract: Mapped[bytes]
    asset_id: Mapped[Decimal] = mapped_column(Numeric(78, 0))
    record_hash: Mapped[bytes]  # the registered asset.put's entry hash
    owner: Mapped[bytes]  # 20-byte EVM address that sent register()
    uri: Mapped[str | None] = mapped_column(Text)
    entry_seq: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(Text, server_default="pending")  # pending|verified|mismatch|unbound
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    matched_at: Mapped[datetime | None]


class Payment(Base):
    """One payment a Stellar source judged (migration 0005)."""

    __tablename__ = "payments"
    __table_args__ = (Index("payments_uri_idx", "uri"),)

    source: Mapped[str] = mapped_column(Text, primary_key=True)  # e.g. "stellar:testnet"
    payment_id: Mapped[str] = mapped_column(Text, primary_key=True)  # Horizon operation id
    tx_hash: Mapped[str] = mapped_column(Text)
    from_account: Mapped[str] = mapped_column(Text)
    to_account: Mapped[str] = mapped_column(Text)
    asset: Mapped[str] = mapped_column(Text)  # "XLM" or "CODE:ISSUER"
    amount: Mapped[Decimal] = mapped_column(Numeric(30, 7))
    memo: Mapped[bytes | None]
    uri: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)  # licensed|underpaid|wrong-asset|wrong-memo|failed
    paid_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AttestOutbox(Base):
    """Attestations the bridge is to sign and publish, in ``id`` order, each exactly once."""

    __tablename__ = "attest_outbox"
    __table_args__ = (
        Index("attest_outbox_unpublished_idx", "id", postgresql_where=text("published_hash IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_hash: Mapped[bytes | None]
    published_at: Mapped[datetime | None]
    subject: Mapped[bytes | None]  # the attested entry hash (migration 0005)
    status: Mapped[str | None] = mapped_column(Text)  # verified | revoked
    data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))


class ApiKey(Base):
    """An API key: the public id is shown; only a hash of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    secret_hash: Mapped[bytes]
    name: Mapped[str] = mapped_column(Text, server_default="")
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """A key claimed before its request is processed, then the response to replay for a retry (kept a day:
    ``store.admin.IDEMPOTENCY_TTL``)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("idempotency_keys_created_idx", "created_at"),)

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[bytes]
    status: Mapped[int | None] = mapped_column(Integer)  # NULL: claimed, the request is still being processed
    response: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ModerationLabel(Base):
    """A label on an asset; any label hides the asset from search (it is not deleted)."""

    __tablename__ = "moderation_labels"

    uri: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(Text, server_default="")
    created_by: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AssetMedia(Base):
    """The CIDs each current (not deleted, not moderated) asset names: ``media``, ``preview``, ``artwork``.

    Derived from ``assets.body`` by the pin worker's reconcile step, which follows
    ``assets.change_seq`` (its position in :class:`PinCursor`); never written by ingest
    (migration 0006).
    """

    __tablename__ = "asset_media"
    __table_args__ = (Index("asset_media_cid_idx", "cid"),)

    asset_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(Text, primary_key=True)  # media | preview | artwork
    cid: Mapped[str] = mapped_column(Text)


class PinCursor(Base):
    """How far the pin worker's reconcile step has followed ``assets.change_seq``."""

    __tablename__ = "pin_cursors"

    name: Mapped[str] = mapped_column(Text, primary_key=True)  # "assets"
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Pin(Base):
    """One CID the operator pins (or pinned), and its job in the durable pin queue.

    ``status``: ``pending`` (to pin; retried with backoff), ``pinned``, ``failed`` (gave up
    after the most attempts; ``last_error`` says why). ``unwanted_since`` is set when no
    current asset names the CID any more: a pinned CID is unpinned (and its row deleted) once
    that is older than the grace period. A claimed job holds ``lease_token`` until
    ``lease_until``; a worker that dies leaves it to be claimed again after that.
    """

    __tablename__ = "pins"
    __table_args__ = (Index("pins_due_idx", "next_attempt_at"),)

    cid: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")  # claims, crashed ones too
    failures: Mapped[int] = mapped_column(Integer, server_default="0")  # attempts that failed
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lease_token: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None]
    unwanted_since: Mapped[datetime | None]
    pinned_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
