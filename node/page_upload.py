"""My Library's media upload: ``POST /v1/local/media``, a file hashed, kept and pinned.

``POST /v1/local/media`` (the same session and CSRF token as the page's writes,
:mod:`node.sessions`) takes a media file's bytes, at most :data:`MAX_UPLOAD_BYTES`:
the node computes its UnixFS CID, keeps it in ``DATA_DIR/uploads/<cid>`` and, with
``ipfs_api`` set, adds and pins it, as ``node publish --file`` does; the page then
publishes that CID.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

import trio
from fastapi import Request

from .errors import NodeError
from .sessions import PageProblem, Sessions, check_csrf, session_of

if TYPE_CHECKING:
    from .daemon import Node

MAX_UPLOAD_BYTES = 256 * 1024 * 1024  # bytes of one media file uploaded from the page
UPLOADS = "uploads"  # DATA_DIR/uploads/<cid>: files uploaded from the page, kept for ``node media push``


async def receive_upload(node: Node, sessions: Sessions, request: Request) -> dict[str, Any]:
    """``POST /v1/local/media`` (session + CSRF): the body is the file's bytes (at most
    :data:`MAX_UPLOAD_BYTES`), ``Content-Type`` its type. The node computes its UnixFS CID
    (:func:`node.media.file_cid`), keeps it in ``DATA_DIR/uploads/<cid>`` and, with
    ``ipfs_api`` set, adds and pins it (:func:`node.media.put_files`, as ``publish --file``
    does); ``{"cid", "size", "mime", "pinned"}`` then fill the form's media fields."""
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_UPLOAD_BYTES:
        raise PageProblem(
            413,
            "Body too large",
            f"a file upload gives its Content-Length and is at most {MAX_UPLOAD_BYTES} bytes",
        )
    sid = session_of(sessions, request)
    check_csrf(sessions, sid, request)
    mime = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}", mime):
        mime = "application/octet-stream"
    folder = node.settings.data_dir / UPLOADS
    await trio.to_thread.run_sync(lambda: folder.mkdir(mode=0o700, parents=True, exist_ok=True))
    tmp = folder / f".upload-{secrets.token_hex(8)}"
    size = 0
    try:
        async with await trio.open_file(tmp, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise PageProblem(
                        413, "Body too large", f"a file upload is at most {MAX_UPLOAD_BYTES} bytes"
                    )
                await f.write(chunk)
        if size == 0:
            raise PageProblem(
                422,
                "Invalid field",
                "the file is empty",
                errors=[{"field": "file", "detail": "the file is empty"}],
            )
        from .media import file_cid, put_files
        from .media_ledger import MediaFile

        cid, size = await trio.to_thread.run_sync(file_cid, tmp)
        path = folder / cid
        await trio.to_thread.run_sync(tmp.replace, path)
    finally:
        await trio.to_thread.run_sync(lambda: tmp.unlink(missing_ok=True))
    api = node.settings.ipfs_api
    try:
        await trio.to_thread.run_sync(
            lambda: put_files(node.settings.data_dir, [MediaFile("media", path, cid, size)], ipfs_api=api)
        )
    except NodeError as exc:
        raise PageProblem(
            502, "IPFS refused", str(exc), errors=[{"field": "file", "detail": str(exc)}]
        ) from None
    return {"cid": cid, "size": size, "mime": mime, "pinned": api is not None}
