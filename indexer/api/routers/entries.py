"""``/v1/entries``: raw signed entries out, signed entries in (the same ingest path as the bridge).

A body is verified and ingested by :meth:`~indexer.store.Store.ingest_raw` in
one thread, or, with ``verify_workers`` set, by a :class:`VerifyPool`: its
parts are checked (:func:`~indexer.store.prepare.check_raws`: verification and
the rows) in worker processes, off the API's GIL, each as soon as the split
reaches its end and while the parts before are ingested
(:meth:`~indexer.store.Store.ingest_checked`, in order: one transaction for a
part and every later one whose check ended meanwhile, since each transaction
costs a plan and a commit), and the results merged as if in one transaction
(:meth:`~indexer.store.Store.results`).
"""

from __future__ import annotations

import logging
import multiprocessing
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from protocol import (
    MAX_ENTRY_BYTES,
    ProtocolError,
    canonical_item_length,
    now_ms,
    parse_entry_hash,
    split_sequence,
)

from ...errors import BadRequest
from ...store import IngestResult, Store
from ...store.admin import request_digest
from ...store.ingest import CheckedReport
from ...store.prepare import Checked, check_raws
from ..deps import ApiContext, Ctx, OptionalKey, ReadLimited, StoreDep
from ..problem import ProblemError, ProblemResponse, problem_body, request_id_of
from ..schemas import IngestOut
from . import errors

log = logging.getLogger(__name__)

router = APIRouter(tags=["entries"])

CBOR = "application/cbor"
CBOR_SEQ = "application/cbor-seq"
STATUSES = ("appended", "duplicate", "held", "fork", "refused", "invalid")
_IDEMPOTENCY_RE = re.compile(r"[\x21-\x7e]{1,255}")
_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/v1/entries/{hash}",
    response_class=Response,
    responses={
        200: {"description": "The exact signed bytes (deterministic CBOR).", "content": {CBOR: _BINARY}},
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
        **errors(400, 404, 422),
    },
    dependencies=[ReadLimited],
    summary="A raw signed entry",
)
def get_entry(hash: str, store: StoreDep, request: Request) -> Response:
    """The entry's exact bytes, so anyone can check its signature. `hash` is a CID or 64 hex digits.

    Entries never change: the ETag is the CID and the response may be cached forever.
    """
    try:
        h = parse_entry_hash(hash)
    except ProtocolError as exc:
        raise BadRequest(f"malformed entry hash: {exc}") from None
    raw = store.reads.raw_entry(entry_hash=h)
    headers = {"ETag": f'"{h.cid}"', "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match", "").strip() in (f'"{h.cid}"', f'W/"{h.cid}"'):
        return Response(status_code=304, headers=headers)
    return Response(raw, media_type=CBOR, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProblemError(413, f"the body is larger than {limit} bytes", code="payload-too-large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, f"the body is larger than {limit} bytes", code="payload-too-large")
        chunks.append(chunk)
    return b"".join(chunks)


def _split(body: bytes, max_items: int) -> Iterator[bytes]:
    """The items of an RFC 8742 CBOR sequence (one entry is a sequence of one), each at most 16 KiB.

    Yields each item as it is found (so a :class:`VerifyPool` checks the first parts while the
    rest are split); raises :class:`BadRequest` once the body proves bad, before any is ingested.

    Each item is decoded from a window of :data:`~protocol.MAX_ENTRY_BYTES` at
    its offset, so an item larger than an entry can be is refused once those
    bytes are read, without decoding (or allocating for) the rest of it. A
    canonical item (every valid entry) is measured in place by the one-pass
    decoder; any other is decoded the general way, which also explains a 400.
    """
    count = 0
    start = 0
    view = memoryview(body)
    while start < len(body):
        if count == max_items:
            raise BadRequest(f"at most {max_items} entries per request")
        count += 1
        n = canonical_item_length(view[start : start + MAX_ENTRY_BYTES])
        if n is not None:
            yield body[start : start + n]
            start += n
            continue
        window = body[start : start + MAX_ENTRY_BYTES]
        try:
            raw = next(split_sequence(window, max_item=MAX_ENTRY_BYTES))
        except ProtocolError:
            if len(body) - start > MAX_ENTRY_BYTES:
                raise BadRequest(
                    f"the item at byte {start} is not a CBOR item of at most {MAX_ENTRY_BYTES} bytes "
                    "(the size limit of an entry)"
                ) from None
            raise BadRequest(
                f"the body is not a CBOR sequence: the item at byte {start} is not valid CBOR"
            ) from None
        yield raw
        start += len(raw)
    if not count:
        raise BadRequest("the body holds no entries")


class VerifyPool:
    """Worker processes that check the parts of a body while the parts before are ingested.

    Args:
        workers: worker processes (``spawn``ed: the API process runs threads).
    """

    PART = 64  # entries a part; a body of fewer than two parts is verified in the ingest thread

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    async def ingest(self, store: Store, items: Iterable[bytes], *, source: str) -> IngestResult:
        """Check and ingest a body's ``items``; nothing is ingested until ``items`` is exhausted, so
        a body that proves bad midway (``items`` raises) changes nothing.

        Each part goes to be checked as soon as it is split off (the workers start while the rest
        of the body is split). Parts are small, so the first is ingested soon, and the rest go in
        as few transactions as the checks allow: every part checked while the ones before were
        ingested joins the next transaction.
        """
        now = now_ms()
        raws: list[bytes] = []
        checks: list[Future[Checked]] = []

        def check_the_parts_split() -> None:
            while (i := len(checks) * self.PART) < len(raws):
                checks.append(
                    self._pool.submit(partial(check_raws, raws[i : i + self.PART], first_index=i, now=now))
                )

        parts: list[CheckedReport] = []
        try:
            for raw in items:
                raws.append(raw)
                if len(raws) >= 2 * self.PART and len(raws) % self.PART == 0:
                    check_the_parts_split()
            if len(raws) < 2 * self.PART:
                return await run_in_threadpool(store.ingest_raw, raws, source=source)
            check_the_parts_split()
            i = 0
            while i < len(checks):  # in order
                ready = [await run_in_threadpool(checks[i].result)]
                i += 1
                while i < len(checks) and checks[i].done():  # checked meanwhile: one transaction
                    ready.append(checks[i].result())
                    i += 1
                parts.append(
                    await run_in_threadpool(store.ingest_checked, Checked.merged(ready), source=source)
                )
        finally:
            for c in checks:
                c.cancel()
        return store.results(parts)

    def warm(self) -> None:
        """Start every worker process now (blocking; call from a thread), not in the first request."""
        for f in [self._pool.submit(check_raws, []) for _ in range(self.workers)]:
            f.result()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _response_body(result: IngestResult) -> dict[str, Any]:
    return {
        "results": [
            {"index": r.index, "hash": r.hash, "status": r.status, "code": r.code, "reason": r.reason}
            for r in result.results
        ],
        "counts": {s: result.count(s) for s in STATUSES},
    }


def _reply(request: Request, status: int, body: dict[str, Any], *, replayed: bool) -> Response:
    body = {**body}
    if "request_id" in body:
        body["request_id"] = request_id_of(request)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    if status >= 400:
        return ProblemResponse(body, status_code=status, headers=headers)
    # orjson: a 1,000-entry answer is ~1,000 result objects, which json.dumps takes ~3 ms to write.
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


@router.post(
    "/v1/entries",
    response_model=IngestOut,
    responses={
        200: {"description": "Every entry was valid and has been processed (see each item's `status`)."},
        **errors(400, 401, 409, 413, 415, 422),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One signed entry (`application/cbor`) or an RFC 8742 CBOR sequence of up to "
            "1,000 entries (`application/cbor` or `application/cbor-seq`), each item at most 16 KiB "
            "(16,384 bytes, the protocol's entry limit), the body at most 1,000 x 16 KiB (both limits "
            "are settings: `max_entries_per_request`, `max_body_bytes`).",
            "content": {CBOR: _BINARY, CBOR_SEQ: _BINARY},
        }
    },
    summary="Submit signed entries",
)
async def submit_entries(
    request: Request,
    ctx: Ctx,
    store: StoreDep,
    key: OptionalKey,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Retry safely: the key is claimed before the body is processed, so of "
            "requests under one key only the first is processed. The same key with the same body "
            "replays the stored response (with `Idempotent-Replayed: true`), or is a 409 "
            "(`code: in-progress`) while the first is still being processed; with a different body "
            "it is a 409 (`code: conflict`) and nothing of that body is applied. A request that fails "
            "(4xx/5xx before it is answered) frees the key; a claim left by a request that died is "
            "taken over after 5 minutes. A key is the caller's own (per API key, else per client "
            "address) and is kept for 24 hours.",
        ),
    ] = None,
) -> Response:
    """Submit signed entries; they go through the same verification and ingest path as the bridge.

    No API key is needed (the signatures authenticate the entries); an API key
    with the `ingest` scope raises the rate limit.

    * **200** with one result per entry when none is invalid. Resubmitting is
      harmless: already-held entries come back as `duplicate`. `held` entries
      wait for the missing earlier entries of their log; `fork` and `refused`
      ones are kept as proof and quarantined.
    * **422** problem (`code: invalid-entries`) when *any* entry fails
      verification: the invalid ones are quarantined, **the valid ones in the
      same request are still processed**, and the problem carries the same
      `results` and `counts` fields as a 200.
    * **400** when the body is not a CBOR sequence, is empty, holds more
      than 1,000 items or an item over 16 KiB (no entry is larger; nothing of
      the request is stored); **413** over 1,000 x 16 KiB; **415** for another
      Content-Type.

    Invalid entries are quarantined once per distinct input, within bounds per
    client address and in total; past a bound they are still answered as
    `invalid` but not recorded (counted in `empressa_quarantine_dropped_total`).
    """
    settings = ctx.settings
    ip = ctx.limits.client_ip(request)
    if key is not None and ("ingest" in key["scopes"] or "admin" in key["scopes"]):
        ctx.limits.check(request, "submit_key", f"key:{key['id']}")
    else:
        ctx.limits.check(request, "submit", ip)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (CBOR, CBOR_SEQ):
        raise ProblemError(415, f"send {CBOR} or {CBOR_SEQ}", code="unsupported-media-type")
    if idempotency_key is not None and not _IDEMPOTENCY_RE.fullmatch(idempotency_key):
        raise BadRequest("Idempotency-Key must be 1-255 visible ASCII characters")
    body = await _read_body(request, settings.max_body_bytes)
    # Keys are the caller's own: scoped by API key, else by client address (kept a day).
    caller = f"key:{key['id']}" if key is not None else f"ip:{ip}"
    stored_key = f"entries:{caller}:{idempotency_key}" if idempotency_key is not None else None
    digest = request_digest(media_type.encode(), body)
    if stored_key is None:
        status, out = await _process(request, ctx, store, body, ip)
        return _reply(request, status, out, replayed=False)
    found = await run_in_threadpool(store.admin.idempotent_claim, key=stored_key, request_hash=digest)
    if found is not None:
        return _reply(request, found[0], found[1], replayed=True)
    # This request holds the key's claim: answer it and record the answer, or give the claim up.
    try:
        status, out = await _process(request, ctx, store, body, ip)
        await run_in_threadpool(
            store.admin.idempotent_store,
            key=stored_key,
            request_hash=digest,
            status=status,
            response=out,
        )
    except Exception:
        await run_in_threadpool(store.admin.idempotent_release, key=stored_key, request_hash=digest)
        raise
    return _reply(request, status, out, replayed=False)


async def _process(
    request: Request, ctx: ApiContext, store: Store, body: bytes, ip: str
) -> tuple[int, dict[str, Any]]:
    """Split, verify and ingest the body: the response's status and body."""
    settings = ctx.settings
    items = _split(body, settings.max_entries_per_request)
    if ctx.verify_pool is not None:
        result = await ctx.verify_pool.ingest(store, items, source=f"http:{ip}")
    else:
        result = await run_in_threadpool(store.ingest_raw, list(items), source=f"http:{ip}")
    out = _response_body(result)
    if result.quarantine_dropped:
        ctx.metrics.quarantine_dropped.inc(result.quarantine_dropped)
    for s, n in out["counts"].items():
        if n:
            ctx.metrics.ingest.labels(s).inc(n)
    invalid = out["counts"]["invalid"]
    if invalid:
        total = len(result.results)
        status = 422
        out = problem_body(
            status=422,
            code="invalid-entries",
            title="Invalid entries",
            detail=f"{invalid} of {total} entries failed verification and were quarantined; "
            f"the other {total - invalid} were processed (see results)",
            instance=request.url.path,
            request_id=request_id_of(request),
            **out,
        )
    else:
        status = 200
    log.info(
        "entries submitted request_id=%s source=http:%s %s",
        request_id_of(request),
        ip,
        " ".join(f"{s}={result.count(s)}" for s in STATUSES if result.count(s)),
    )
    return status, out
