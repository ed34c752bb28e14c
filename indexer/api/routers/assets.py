"""``/v1/assets``: search, one asset, its history."""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Response

from ...errors import BadRequest
from ..deps import AssetPath, Ctx, IndexDep, ReadLimited, StoreDep, parse_creator
from ..media import media_files
from ..schemas import AssetOut, History, SearchResults
from . import errors

log = logging.getLogger(__name__)

router = APIRouter(tags=["assets"], dependencies=[ReadLimited])

Sort = Literal["relevance", "newest", "title"]
Price = Annotated[Decimal | None, Query(ge=0, le=Decimal("1e18"), allow_inf_nan=False)]


@router.get(
    "/v1/assets",
    response_model=SearchResults,
    responses=errors(400, 410, 422),
    summary="Search assets",
)
def search_assets(
    ctx: Ctx,
    index: IndexDep,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Full-text query (title > tags > description). A term is a run of letters or "
            "digits of at most 64 characters; punctuation separates terms and is otherwise ignored. "
            "Missing or blank: no text search (every asset that passes the filters). A non-blank `q` "
            'that holds no term (only punctuation or quotes, such as `"` or `/.*/`, or only words '
            "over 64 characters) is a 400 problem with `code: no-search-terms`, never the unfiltered "
            "listing.",
        ),
    ] = None,
    creator: Annotated[str | None, Query(description="Only this creator's assets (a did:key).")] = None,
    tag: Annotated[list[str], Query(description="Repeatable; an asset must carry every tag given.")] = [],  # noqa: B006
    license: Annotated[
        str | None, Query(max_length=32, description="License type, e.g. `commercial`.")
    ] = None,
    status: Annotated[
        str | None,
        Query(
            max_length=32,
            description="On-chain status: `listed` (no registration), `registered` (any), `verified`, "
            "`mismatch`, `unbound`, `licensed` (at least one licensing payment).",
        ),
    ] = None,
    media_type: Annotated[
        str | None,
        Query(max_length=32, description="MIME major type of the media: `audio`, `image`, `video`, …"),
    ] = None,
    min_price: Price = None,
    max_price: Price = None,
    sort: Annotated[Sort | None, Query(description="Default: `relevance` with `q`, else `newest`.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=2000, description="`next_cursor` of the previous page.")
    ] = None,
    facets: Annotated[bool, Query(description="Also return facet counts.")] = False,
) -> Response:
    """Ranked full-text search with filters, sorts, opaque cursors and facet counts.

    Hidden (moderated) and deleted assets are never returned. An asset matches
    when it passes every filter given; `tag` may repeat.
    """
    from ...search import SearchQuery

    if creator is not None:
        parse_creator(creator)
    if len(tag) > 20 or any(not t or len(t) > 32 for t in tag):
        raise BadRequest("at most 20 tags of 1-32 characters")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise BadRequest("min_price is greater than max_price")
    query = SearchQuery(
        q=q,
        creator=creator,
        tags=list(tag),
        license=license,
        status=status,
        media_type=media_type,
        min_price=min_price,
        max_price=max_price,
        sort=sort,
        limit=limit,
        cursor=cursor,
        facets=facets,
    )
    start = time.perf_counter()
    page = index.search(query)  # refreshes the reader first
    ctx.metrics.search_latency.observe(time.perf_counter() - start)
    # The items come from the index already in the SearchResults shape (the schemathesis
    # test holds them to it): encoded at once, not re-validated field by field (~7% of a request).
    body = {
        "items": page.items,
        "next_cursor": page.next_cursor,
        "total": page.total,
        "facets": page.facets or {},
    }
    return Response(orjson.dumps(body), media_type="application/json")


@router.get(
    "/v1/assets/{did}/{key}",
    response_model=AssetOut,
    responses=errors(400, 404, 422),
    summary="One asset",
)
def get_asset(ctx: Ctx, uri: AssetPath, store: StoreDep) -> dict[str, Any]:
    """The asset's current state, also when deleted (`deleted: true`) or hidden (`hidden: true`).

    `entry_hash` names the signed entry behind this state; fetch its exact
    bytes at `raw_url` to check the creator's signature yourself. `media_files`
    lists the files it names with the operator's pin status and a gateway URL.
    """
    asset = store.reads.asset(uri=uri)
    asset["registrations"] = store.chain.registrations(uri=uri.text)
    asset["media_files"] = media_files(asset, store, gateway=ctx.settings.ipfs_gateway)
    return asset


@router.get(
    "/v1/assets/{did}/{key}/history",
    response_model=History,
    responses=errors(400, 404, 422),
    summary="Every version of an asset",
)
def get_history(uri: AssetPath, store: StoreDep) -> dict[str, Any]:
    """Every `asset.put` and `asset.delete` of this asset, oldest first, decoded from the signed entries."""
    return {"uri": uri.text, "versions": store.reads.history(uri=uri)}
