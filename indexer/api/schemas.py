"""The API's response and request models (pydantic), apart from the database models.

These shapes are the contract with frontends: field names are stable, new
fields may be added. Identifiers are text: a creator is a ``did:key``, an
entry hash a CIDv1 (``bafyrei…``), an asset a URI ``empressa://{did}/{key}``.
Timestamps named ``*_ts`` are unix milliseconds from the creator's clock;
``*_at`` are ISO 8601 times of this indexer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DID_EXAMPLE = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
URI_EXAMPLE = f"empressa://{DID_EXAMPLE}/night-drive"
CID_EXAMPLE = "bafyreigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"

# Request text that is stored in PostgreSQL, whose text type cannot hold U+0000.
StoredText = Annotated[str, Field(pattern=r"^[^\x00]*$")]


class Problem(BaseModel):
    """An RFC 9457 problem: every error response of this API."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "type": "urn:empressa:problem:not-found",
                "title": "Not found",
                "status": 404,
                "detail": f"no asset {URI_EXAMPLE}",
                "instance": f"/v1/assets/{DID_EXAMPLE}/night-drive",
                "request_id": "5f0c8e1e2b7d4c4f9f3f7a2b1c0d9e8f",
                "code": "not-found",
            }
        },
    )

    type: str = Field(description="A URN naming the problem kind: `urn:empressa:problem:{code}`.")
    title: str = Field(description="Short, human-readable summary of the problem kind.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str = Field(description="The request path.")
    request_id: str = Field(description="Also in the `X-Request-ID` header; quote it when reporting.")
    code: str = Field(
        description="Stable machine-readable code: `bad-request`, `not-found`, `validation-failed`, "
        "`unauthorized`, `forbidden`, `conflict`, `rate-limited`, `payload-too-large`, "
        "`unsupported-media-type`, `invalid-entries`, `database-unavailable`, `search-unavailable`, "
        "`cursor-expired`, `internal`, …"
    )


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Media(_Open):
    cid: str = Field(description="Content id of the file (IPFS CID).")
    mime: str = Field(examples=["audio/wav"])
    size: int = Field(description="Bytes.")
    duration_ms: int | None = None


class Price(_Open):
    amount: str = Field(description="Decimal string.", examples=["12.50"])
    currency: str = Field(examples=["USD"])


class License(_Open):
    type: str = Field(examples=["commercial"], description="personal, commercial, exclusive, cc0, cc-by, …")
    price: Price | None = None
    terms: str | None = None


class Payout(_Open):
    evm: str | None = Field(default=None, description="0x address.")
    stellar: str | None = Field(default=None, description="G… account.")


class Label(BaseModel):
    label: str
    reason: str
    created_at: str | None


class RegistrationOut(BaseModel):
    """One on-chain registration of the asset (an `AssetRegistered` log the reconciler applied)."""

    chain: str = Field(description="CAIP-2 chain id.", examples=["eip155:31337"])
    asset_id: str = Field(description="The registry's asset id, in decimal.", examples=["1"])
    owner: str = Field(description="The checksummed account that registered it.")
    tx: str = Field(description="Transaction hash (0x hex).")
    block: int
    contract: str = Field(description="The registry contract's address.")
    entry: str = Field(description="CID of the registered entry (the version that was registered).")
    entry_seq: int | None = Field(description="Log position of the registered entry.")
    status: str = Field(description="`verified`, `mismatch` or `unbound`.")


class PaymentOut(BaseModel):
    """A payment whose memo named the asset, and what it was judged to be."""

    chain: str = Field(description="The Stellar network, as a CAIP-2 id.", examples=["stellar:testnet"])
    status: Literal["licensed", "underpaid", "wrong-asset", "wrong-memo", "failed"] = Field(
        description="`licensed`: in the price's currency, at least the price, in a successful transaction; "
        "else why it licenses nothing."
    )
    buyer: str = Field(description="The paying Stellar account (G…).")
    amount: str = Field(description="What the payout account received, 7 decimals.", examples=["12.5000000"])
    asset: str = Field(description="`XLM`, or `CODE:ISSUER` for an issued asset.", examples=["XLM"])
    tx: str = Field(description="The Stellar transaction hash (hex).")
    at: str | None = Field(description="When the payment's ledger closed (ISO 8601).")


class MediaFileOut(BaseModel):
    """One file the asset's record names, as the operator holds it on IPFS."""

    role: Literal["media", "preview", "artwork"] = Field(description="The body field that names it.")
    cid: str = Field(description="Its IPFS CID, as the record names it.", examples=[CID_EXAMPLE])
    size: int = Field(description="Bytes, as the record says.")
    mime: str = Field(examples=["audio/wav"])
    cid_kind: Literal["unixfs", "raw-block", "unknown"] = Field(
        description="`unixfs`: what `ipfs add --cid-version=1 --raw-leaves` gives (resolves on IPFS); "
        "`raw-block`: an old record's single block over a file of more than 256 KiB (IPFS does not give "
        "it); `unknown`: another codec."
    )
    pin_status: Literal["pending", "pinned", "failed", "unpinning"] | None = Field(
        description="The operator's pin of this CID: `pending` (queued or being retried), `pinned`, "
        "`failed` (gave up; see `pin_error`), `unpinning` (no current asset names it; unpinned after "
        "the grace period); null when the operator does not pin it (no IPFS node configured, "
        "a deleted or moderated asset, or not queued yet)."
    )
    pin_attempts: int = Field(description="Attempts at pinning it so far (0 without a pin).")
    pin_error: str | None = Field(description="Why the last attempt failed, if it did.")
    pinned_at: str | None = Field(description="When it was pinned (ISO 8601).")
    gateway_url: str = Field(description="Where the operator's gateway serves it: {ipfs_gateway}/ipfs/{cid}.")


class AssetOut(BaseModel):
    """One asset's current state: its latest `asset.put`, unless a later `asset.delete`."""

    uri: str = Field(examples=[URI_EXAMPLE])
    did: str = Field(examples=[DID_EXAMPLE])
    key: str = Field(examples=["night-drive"])
    deleted: bool = Field(description="True once an `asset.delete` follows the last put (fields keep it).")
    hidden: bool = Field(description="True while any moderation label is on it (left out of search).")
    labels: list[Label]
    title: str
    description: str
    tags: list[str]
    license: License | None
    price: str | None = Field(description="The license price as a decimal string.", examples=["12.5"])
    currency: str | None = Field(examples=["USD"])
    media: Media | None
    preview: Media | None
    artwork: Media | None
    payout: Payout | None
    media_type: str | None = Field(description="The MIME major type: audio, image, video, …")
    seq: int = Field(description="Log position of the entry that produced this state.")
    versions: int = Field(description="How many puts and deletes this asset has had.")
    created_ts: int
    updated_ts: int
    entry_hash: str = Field(description="CID of the entry that produced this state.", examples=[CID_EXAMPLE])
    put_hash: str | None = Field(
        description="CID of the latest `asset.put` (what an EVM registration names)."
    )
    raw_url: str = Field(description="Where the signed entry's exact bytes are served.")
    chain_status: str = Field(
        description="The registration that counts: `listed` (none), `verified` (a registration whose "
        "owner the registered record names in `payout.evm`), `mismatch` (another account registered "
        "it) or `unbound` (the registered record names no EVM address)."
    )
    onchain: dict[str, Any] = Field(
        description="By CAIP-2 chain id: for an EVM chain the registration that counts (`asset_id`, "
        "`owner`, `tx`, `block`, `contract`, `entry`, `entry_seq`, `status`); for a Stellar network "
        "the licenses (filled by the reconciler)."
    )
    registrations: list[RegistrationOut] = Field(
        default_factory=list, description="Every registration of this asset on every chain, oldest first."
    )
    verification: dict[str, Any] = Field(description="Bridge attestations (filled by the reconciler).")
    licenses: int = Field(description="How many payments licensed this asset (see `payments`).")
    payments: list[PaymentOut] = Field(
        description="The newest payments (at most 20) whose hash memo named this asset, newest first."
    )
    media_files: list[MediaFileOut] = Field(
        default_factory=list,
        description="The files the record names (`media`, `preview`, `artwork`, in that order) with their "
        "CID kind, the operator's pin status and a gateway URL. The fields `media`, `preview` and "
        "`artwork` are unchanged.",
    )


class Version(BaseModel):
    """One version of an asset, decoded from its signed entry."""

    version: int = Field(description="1 for the first entry about this asset.")
    seq: int
    kind: Literal["asset.put", "asset.delete"]
    ts: int
    hash: str = Field(examples=[CID_EXAMPLE])
    prev: str | None
    body: dict[str, Any] = Field(description="The entry's body as signed (empty for a delete).")
    raw_url: str
    received_at: str | None


class History(BaseModel):
    uri: str
    versions: list[Version] = Field(description="Oldest first.")


class AssetSummary(_Open):
    """An asset in a listing (search results and a creator's assets)."""

    uri: str = Field(examples=[URI_EXAMPLE])
    did: str | None = Field(default=None, examples=[DID_EXAMPLE])
    key: str | None = Field(default=None, examples=["night-drive"])
    title: str | None = None
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    license: str | None = Field(default=None, description="License type.")
    price: str | None = Field(default=None, description="Decimal string.", examples=["12.5"])
    currency: str | None = None
    media_type: str | None = None
    media_mime: str | None = None
    media_cid: str | None = None
    created_ts: int | None = None
    updated_ts: int | None = None
    chain_status: str | None = Field(
        default=None, description="`listed`, `verified`, `mismatch` or `unbound`."
    )


class SearchResults(BaseModel):
    items: list[AssetSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    total: int = Field(description="How many assets match (may be an estimate for very large results).")
    facets: dict[str, Any] = Field(
        description="Facet counts (tags, license, status, media type) when `facets=true`; else empty."
    )


class AssetPage(BaseModel):
    items: list[AssetSummary]
    next_cursor: str | None


class Head(BaseModel):
    seq: int
    hash: str = Field(examples=[CID_EXAMPLE])


class MissingRange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from", serialization_alias="from")
    to: int


class Sync(BaseModel):
    """How complete this indexer's mirror of the creator's log is."""

    status: Literal["synced", "gap", "forked"] = Field(
        description="`gap`: later entries are held until `missing` arrive; "
        "`forked`: two entries share `forked_seq`, nothing after it is applied."
    )
    missing: MissingRange | None
    forked_seq: int | None


class Counts(BaseModel):
    assets: int = Field(description="Live (not deleted) assets.")
    deleted: int


class CreatorOut(BaseModel):
    did: str = Field(examples=[DID_EXAMPLE])
    head: Head | None = Field(description="The last applied entry of their log (read-after-write).")
    sync: Sync
    searchable: bool | None = Field(
        description="Whether this API server's search already reflects every change to the creator's "
        "assets applied so far (so everything up to `head`): after publishing entry *n*, once "
        "`head.seq >= n` and `searchable` is true, `GET /v1/assets` shows it. False while the search "
        "index catches up (usually milliseconds); null when this server has no search index. Each API "
        "server keeps its own index: ask the one you search.",
    )
    counts: Counts
    first_seen: str | None
    updated_at: str | None


class AuthorBehind(BaseModel):
    """An author whose log this indexer has not fully applied."""

    did: str = Field(examples=[DID_EXAMPLE])
    head: Head | None = Field(description="The last applied entry (null when none is applied yet).")
    sync: Sync = Field(description="`gap` with the `missing` range, or `forked` with `forked_seq`.")
    held: int = Field(description="Entries parked in `pending`, waiting for the missing ones.")
    updated_at: str | None = Field(description="When the head last moved (null without a head).")


class AuthorsBehindPage(BaseModel):
    items: list[AuthorBehind] = Field(description="In author-key order.")
    next_cursor: str | None


class ActivityItem(BaseModel):
    id: int = Field(description="Increasing in commit order; the SSE event id.")
    kind: str = Field(
        description="published, updated, deleted, attested, moderated, unmoderated, registered, licensed, …"
    )
    uri: str | None
    did: str | None
    entry_hash: str | None
    seq: int | None
    data: dict[str, Any]
    created_at: str | None


class ActivityPage(BaseModel):
    items: list[ActivityItem]
    next_cursor: str | None = Field(
        description="Continues in the same direction; in forward (`after`) mode it is always set, "
        "so it can be polled for newer rows."
    )


class ItemResultOut(BaseModel):
    index: int = Field(description="Position of the entry in the request body.")
    hash: str | None = Field(description="CID of the entry (null when it could not be parsed).")
    status: Literal["appended", "duplicate", "held", "fork", "refused", "invalid"] = Field(
        description="`appended`: applied now; `duplicate`: already held, nothing changed; "
        "`held`: valid, parked until the missing earlier entries of its log arrive; "
        "`fork`: conflicts with a held entry at the same seq (kept as proof, quarantined); "
        "`refused`: its author's log is forked; `invalid`: failed verification (quarantined)."
    )
    code: str | None = Field(description="decode, schema, signature, timestamp, fork, after-fork, held, …")
    reason: str | None


class IngestCounts(BaseModel):
    appended: int
    duplicate: int
    held: int
    fork: int
    refused: int
    invalid: int


class IngestOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "results": [
                    {"index": 0, "hash": CID_EXAMPLE, "status": "appended", "code": None, "reason": None},
                    {
                        "index": 1,
                        "hash": CID_EXAMPLE,
                        "status": "held",
                        "code": "held",
                        "reason": "held until seq 3..3 of this author arrive",
                    },
                ],
                "counts": {"appended": 1, "duplicate": 0, "held": 1, "fork": 0, "refused": 0, "invalid": 0},
            }
        }
    )

    results: list[ItemResultOut] = Field(description="One per entry, in request order.")
    counts: IngestCounts


class ApiKeyCreate(BaseModel):
    name: StoredText = Field(default="", max_length=200)
    scopes: list[Literal["ingest", "moderate", "admin"]] = Field(min_length=1, max_length=3)


class ApiKeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key to send as `Authorization: Bearer …`. Shown only this once.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]


class LabelIn(BaseModel):
    label: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", examples=["spam"])
    reason: StoredText = Field(default="", max_length=1000)


class PinRetryIn(BaseModel):
    cids: list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9]+$")]] | None = Field(
        default=None,
        max_length=1000,
        description="Only these CIDs' failed jobs; absent: every failed job.",
    )


class PinRetryOut(BaseModel):
    retried: list[str] = Field(description="The CIDs whose failed job is pending again, due now.")


class LabelOut(BaseModel):
    uri: str
    label: str
    reason: str | None = None
    created_at: str | None = None
    hidden: bool = Field(description="Whether the asset is hidden from search now.")


class QuarantineItem(BaseModel):
    id: int
    digest: str = Field(description="SHA-256 of the raw input, hex.")
    code: str
    reason: str
    source: str
    seq: int | None
    author: str | None = Field(description="Author key, hex, when the input parsed far enough.")
    times_seen: int
    received_at: str | None
    last_seen: str | None
    size: int = Field(description="Bytes of the input received.")
    raw_kept: bool = Field(
        description="Whether the exact bytes are kept: not for an input over 16 KiB (no entry is that large), "
        "of which only the digest, size and reason are."
    )
    raw_base64: str | None = Field(description="The exact bytes received, base64; null when not kept.")


class QuarantinePage(BaseModel):
    items: list[QuarantineItem]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    ready: bool
    database: str
    chains: dict[str, Any] = Field(default_factory=dict, description="Each chain source's figures.")
    revision: str | None = None
    expected: str | None = None
