"""``/v1/creators``: a creator, their sync status, their assets."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ...errors import IndexerError
from ..deps import CreatorPath, Ctx, ReadLimited, StoreDep, index_of
from ..problem import ProblemError
from ..schemas import AssetPage, CreatorOut
from . import errors

log = logging.getLogger(__name__)

router = APIRouter(tags=["creators"], dependencies=[ReadLimited])


def index_position(ctx: Ctx) -> int | None:
    """The ``assets.change_seq`` this server's search index has reached, or None without a usable index.

    Refreshed first (cheap), so it is at most ~20 ms old; the position only
    moves once the changes up to it are visible to this server's searches.
    """
    try:
        index = index_of(ctx)
        index.refresh()
        return int(index.position)
    except (ProblemError, IndexerError) as exc:
        log.debug("creator read without a search position: %s", exc)
        return None


IndexPosition = Annotated[int | None, Depends(index_position)]


@router.get(
    "/v1/creators/{did}",
    response_model=CreatorOut,
    response_model_by_alias=True,
    responses=errors(400, 404, 422),
    summary="A creator",
)
def get_creator(author: CreatorPath, store: StoreDep, position: IndexPosition) -> dict[str, Any]:
    """A creator's counts and the head of their log as mirrored here.

    Read-after-write: after publishing entry *n*, poll until `head.seq >= n`
    (it is stored and readable), then until `searchable` is true (search on
    this server shows it too). `sync.status` is `gap` when later entries
    arrived before earlier ones (`missing` is the range still awaited) and
    `forked` when the creator signed two different entries at `forked_seq`
    (nothing after it is applied).
    """
    return store.reads.creator(author=author, indexed_through=position)


@router.get(
    "/v1/creators/{did}/assets",
    response_model=AssetPage,
    responses=errors(400, 422),
    summary="A creator's assets",
)
def get_creator_assets(
    author: CreatorPath,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    deleted: Annotated[bool, Query(description="Include deleted assets.")] = False,
) -> dict[str, Any]:
    """Their assets, newest first, keyset-paginated (hidden ones are left out)."""
    return store.reads.creator_assets(author=author, limit=limit, cursor=cursor, include_deleted=deleted)
