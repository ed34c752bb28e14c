"""The node's local HTTP API on 127.0.0.1: a "my library" view and a write door.

Reads are open to local processes; writes need the bearer token the daemon
writes to ``DATA_DIR/api.token`` (mode 0600), so only the node's owner can
publish through it. The CLI uses it to hand writes to a running daemon, so the
entry is announced at once and the daemon stays the only writer of its log.
"""

from __future__ import annotations

import hmac
import logging
import socket
import uuid
from typing import Any

import trio
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from hypercorn.config import Config
from hypercorn.trio import serve
from pydantic import BaseModel

from protocol import ProtocolError, parse_did

from .daemon import Node
from .errors import ListenError, NodeError, NotFoundError
from .logctx import correlation_id

log = logging.getLogger(__name__)


class LocalWrite(BaseModel):
    kind: str
    key: str
    body: dict[str, Any]


def _problem(status: int, title: str, detail: str, request: Request) -> JSONResponse:
    rid = getattr(request.state, "request_id", "")
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, "request_id": rid},
        status_code=status,
        media_type="application/problem+json",
    )


def create_local_app(node: Node, token: str) -> FastAPI:
    app = FastAPI(title="Empressa node (local)", docs_url="/docs", openapi_url="/openapi.json")

    @app.middleware("http")
    async def request_id(request: Request, call_next: Any) -> Any:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        request.state.request_id = rid
        correlation_id.set(rid)
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        log.info(
            "local api request_id=%s %s %s -> %d", rid, request.method, request.url.path, response.status_code
        )
        return response

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        return _problem(422, "Invalid entry", str(exc), request)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return _problem(404, "Not found", str(exc), request)

    @app.exception_handler(NodeError)
    async def node_error(request: Request, exc: NodeError) -> JSONResponse:
        return _problem(409, "Refused", str(exc), request)

    def require_token(authorization: str = Header(default="")) -> None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise _Unauthorized()

    class _Unauthorized(Exception):
        pass

    @app.exception_handler(_Unauthorized)
    async def unauthorized(request: Request, exc: _Unauthorized) -> JSONResponse:
        return _problem(401, "Unauthorized", "a valid bearer token from api.token is required", request)

    @app.get("/v1/status")
    async def status() -> dict[str, Any]:
        entries = await trio.to_thread.run_sync(node.store.count_entries)
        return {
            "did": node.did,
            "peer_id": node.peer_id,
            "multiaddrs": node.addrs(),
            "peers": node.p2p.peers(),
            "entries": entries,
            "stats": vars(node.stats),
        }

    trusted = frozenset(parse_did(d) for d in node.settings.trusted_bridges)

    @app.get("/v1/library")
    async def library(all: bool = False, deleted: bool = False) -> dict[str, Any]:
        items = await trio.to_thread.run_sync(
            lambda: node.store.library(local_only=not all, include_deleted=deleted, trusted=trusted)
        )
        return {"items": items}

    @app.post("/v1/local/entries", dependencies=[Depends(require_token)], status_code=201)
    async def write(req: LocalWrite) -> dict[str, Any]:
        entry = await node.publish(kind=req.kind, key=req.key, body=req.body)
        return {"uri": entry.uri.text, "hash": entry.hash.cid, "seq": entry.seq}

    return app


def bind_local_api(host: str, port: int) -> socket.socket:
    """A listening socket for the local API (port 0: any free one).

    Bound before the daemon starts anything, so a port in use (or a host that is
    not ours) is a one-line error at start instead of an exception deep in the
    server's nursery.

    Raises:
        ListenError: the address cannot be bound.
    """
    try:
        family, type_, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, type_, proto)
    except OSError as exc:
        raise ListenError(f"cannot serve the local API on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot serve the local API on {host}:{port}: {exc.strerror or exc}") from None
    return sock


async def serve_local_api(
    node: Node,
    *,
    sock: socket.socket,
    token: str,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the local API on ``sock`` (from :func:`bind_local_api`, which it takes over); reports the
    bound base URLs through ``task_status``."""
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    await serve(create_local_app(node, token), config, task_status=task_status)  # type: ignore[arg-type]
