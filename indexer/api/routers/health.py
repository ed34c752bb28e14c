"""``/healthz``, ``/readyz``, ``/metrics``: for load balancers and Prometheus (never rate-limited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from ..chains import chain_readiness
from ..deps import Ctx
from ..problem import ProblemResponse, problem
from ..schemas import Health, Ready
from . import errors

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> dict[str, Any]:
    """The process is up and serving."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Ready, responses=errors(), summary="Readiness")
def readyz(request: Request, ctx: Ctx) -> Any:
    """The database answers, its schema is at the head migration, and every configured chain source
    reports without an error (a bad chain config, a reorg too deep, a silent reconciler); 503 problem
    otherwise, whose detail says why."""
    if ctx.store is None:
        return problem(
            request, status=503, code="database-unavailable", detail="the database is not connected"
        )
    report = ctx.store.readiness()
    if report["ready"]:
        why, chains = chain_readiness(ctx.store, ctx.settings, started=ctx.started)
        report["chains"] = chains
        if why is not None:
            return problem(
                request, status=503, code="not-ready", title="Not ready", detail=why, chains=chains
            )
    if not report["ready"]:
        if report["database"] != "ok":
            detail = "the database is unreachable"
        else:
            detail = f"the schema is at {report.get('revision')}, expected {report.get('expected')}"
        resp: ProblemResponse = problem(
            request,
            status=503,
            code="not-ready",
            title="Not ready",
            detail=detail,
            database=report.get("database"),
            revision=report.get("revision"),
            expected=report.get("expected"),
        )
        return resp
    return report


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text exposition.", "content": {"text/plain": {}}}},
    summary="Prometheus metrics",
)
def metrics(ctx: Ctx) -> Response:
    """Request counts and latency by route, ingest outcomes, search latency (plus other processes' metrics
    when PROMETHEUS_MULTIPROC_DIR is set)."""
    body, content_type = ctx.metrics.render()
    return Response(body, media_type=content_type)
