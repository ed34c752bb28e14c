"""``/v1/creators``: a creator, their sync status, their assets."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ...store import reads
from ..deps import CreatorPath, EngineDep, ReadLimited
from ..schemas import AssetPage, CreatorOut
from . import errors

router = APIRouter(tags=["creators"], dependencies=[ReadLimited])


@router.get(
    "/v1/creators/{did}",
    response_model=CreatorOut,
    response_model_by_alias=True,
    responses=errors(400, 404, 422),
    summary="A creator",
)
def get_creator(author: CreatorPath, engine: EngineDep) -> dict[str, Any]:
    """A creator's counts and the head of their log as mirrored here.

    Read-after-write: after publishing entry *n*, poll until `head.seq >= n`.
    `sync.status` is `gap` when later entries arrived before earlier ones
    (`missing` is the range still awaited) and `forked` when the creator signed
    two different entries at `forked_seq` (nothing after it is applied).
    """
    return reads.creator(engine, author=author)


@router.get(
    "/v1/creators/{did}/assets",
    response_model=AssetPage,
    responses=errors(400, 422),
    summary="A creator's assets",
)
def get_creator_assets(
    author: CreatorPath,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    deleted: Annotated[bool, Query(description="Include deleted assets.")] = False,
) -> dict[str, Any]:
    """Their assets, newest first, keyset-paginated (hidden ones are left out)."""
    return reads.creator_assets(engine, author=author, limit=limit, cursor=cursor, include_deleted=deleted)
