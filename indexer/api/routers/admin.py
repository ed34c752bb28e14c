"""``/v1/admin``: API keys, moderation labels, the quarantine, authors behind, failed pins. Every call needs a
bearer API key."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from ...store.pins import Pins
from ..deps import AdminKey, AssetPath, ModerateKey, StoreDep
from ..schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyOut,
    AuthorsBehindPage,
    LabelIn,
    LabelOut,
    PinRetryIn,
    PinRetryOut,
    QuarantinePage,
)
from . import errors

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_AUTH = (400, 401, 403, 422)


@router.post(
    "/api-keys",
    response_model=ApiKeyCreated,
    status_code=201,
    responses=errors(*_AUTH),
    summary="Create an API key (scope admin)",
)
def create_key(body: ApiKeyCreate, store: StoreDep, caller: AdminKey) -> dict[str, Any]:
    """Create a key; the response holds its `secret`, shown this once and never stored."""
    key_id, secret = store.admin.create_api_key(name=body.name, scopes=body.scopes)
    listed = {k["id"]: k for k in store.admin.list_api_keys()}
    return {**listed[key_id], "secret": secret}


@router.get(
    "/api-keys", response_model=ApiKeyList, responses=errors(*_AUTH), summary="List API keys (scope admin)"
)
def list_keys(store: StoreDep, caller: AdminKey) -> dict[str, Any]:
    """Every key with its scopes and last use, revoked ones included; never a secret."""
    return {"items": store.admin.list_api_keys()}


@router.delete(
    "/api-keys/{key_id}",
    response_model=ApiKeyOut,
    responses=errors(*_AUTH, 404),
    summary="Revoke an API key (scope admin)",
)
def revoke_key(
    key_id: Annotated[str, Path(max_length=64)], store: StoreDep, caller: AdminKey
) -> dict[str, Any]:
    """Revoke a key at once; revoking twice is harmless."""
    return store.admin.revoke_api_key(key_id=key_id)


@router.put(
    "/moderation/{did}/{key}",
    response_model=LabelOut,
    responses=errors(*_AUTH, 404),
    summary="Label an asset (scope moderate)",
)
def add_label(uri: AssetPath, body: LabelIn, store: StoreDep, caller: ModerateKey) -> dict[str, Any]:
    """Put a moderation label on an asset: it leaves search (it is not deleted) until every label is removed."""
    return store.admin.add_label(uri=uri, label=body.label, reason=body.reason, created_by=caller["id"])


@router.delete(
    "/moderation/{did}/{key}/{label}",
    response_model=LabelOut,
    responses=errors(*_AUTH, 404),
    summary="Remove a label (scope moderate)",
)
def remove_label(
    uri: AssetPath,
    label: Annotated[str, Path(max_length=64)],
    store: StoreDep,
    caller: ModerateKey,
) -> dict[str, Any]:
    """Remove one label; `hidden` says whether others remain."""
    return store.admin.remove_label(uri=uri, label=label, removed_by=caller["id"])


@router.get(
    "/quarantine",
    response_model=QuarantinePage,
    responses=errors(*_AUTH),
    summary="Refused inputs (scope admin)",
)
def quarantine(
    store: StoreDep,
    caller: AdminKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> dict[str, Any]:
    """Everything refused (invalid, fork, after-fork, unstorable), newest first, with the reason and the raw
    bytes: of an input over 16 KiB only its `digest` and `size` are kept (`raw_kept: false`, `raw_base64`
    null). The quarantine is bounded per source and in total and rows age out (settings `quarantine_*`)."""
    return store.admin.quarantine_page(limit=limit, cursor=cursor)


@router.get(
    "/authors",
    response_model=AuthorsBehindPage,
    responses=errors(*_AUTH),
    summary="Authors whose log is not synced (scope admin)",
)
def authors_behind(
    store: StoreDep,
    caller: AdminKey,
    status: Annotated[
        Literal["gap", "forked"] | None,
        Query(description="Only this status; both when absent."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> dict[str, Any]:
    """Authors this indexer is behind on: `gap` (entries held until the `missing` range arrives) or
    `forked` (two entries at `forked_seq`; nothing after it is applied), with their head, keyset-paginated."""
    return store.admin.authors_behind(limit=limit, status=status, cursor=cursor)


@router.post(
    "/pins/retry",
    response_model=PinRetryOut,
    responses=errors(*_AUTH),
    summary="Retry failed pins (scope admin)",
)
def retry_pins(store: StoreDep, caller: AdminKey, body: PinRetryIn | None = None) -> dict[str, Any]:
    """Put failed pin jobs (every one, or those of `cids`) back in the queue with a fresh count of attempts,
    once what made them fail is fixed; the pin worker takes them at once. Their failure count and last error
    stay, as history (`media_files` of an asset shows them)."""
    return {"retried": Pins(store.engine).retry_failed(None if body is None else body.cids)}
