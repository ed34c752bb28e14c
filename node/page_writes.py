"""My Library's writes: publish, edit and delete, with the CLI's own body builder.

The page's writes take the ``node publish`` fields as JSON (the shape of a
``publish --from`` line: ``title``, ``description``, ``tags``, ``cid``, ``mime``,
``size``, ``duration_ms``, ``license``, ``price``, ``currency``, ``terms``,
``payout_evm``, ``payout_stellar``), and the node builds the ``asset.put`` body
with the CLI's own :func:`node.client.asset_fields_of` and :func:`node.client.put_body`,
checked by :func:`protocol.check_write`. A bad field is a 422 problem whose
``errors`` is ``[{"field", "detail"}]`` (:func:`field_error`); nothing is written.
The routes, and the session, origin and CSRF checks before them, are in :mod:`node.pages`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson
import trio

from protocol import AssetUri, ProtocolError, check_write

from .client import asset_fields_of, put_body, put_of
from .errors import NodeError, NotFoundError
from .sessions import PageProblem

if TYPE_CHECKING:
    from .daemon import Node


# A schema error's location, as the form's field that holds it (longest prefix first).
_LOCATIONS = (
    ("body.media.cid", "cid"), ("body.media.mime", "mime"), ("body.media.size", "size"),
    ("body.media.duration_ms", "duration_ms"), ("body.media", "cid"),
    ("body.license.price.amount", "price"), ("body.license.price.currency", "currency"),
    ("body.license.price", "price"), ("body.license.terms", "terms"), ("body.license", "license"),
    ("body.payout.evm", "payout_evm"), ("body.payout.stellar", "payout_stellar"),
    ("body.payout", "payout_evm"), ("body.title", "title"), ("body.description", "description"),
    ("body.tags", "tags"), ("key", "key"),
)  # fmt: skip
_FLAG = re.compile(r"--([a-z][a-z-]*)")
_FIELD_OF_FLAG = {
    "file": "cid",
    "license": "license",
    "payout-evm": "payout_evm",
    "duration-ms": "duration_ms",
}


def field_error(exc: Exception) -> dict[str, str]:
    """``{"field", "detail"}``: the form field a write's error is about, and its one-line reason.

    A schema error (``body.title: must not be blank``) names its location; the CLI's
    own errors name a flag (``--price and --currency go together``) or a field (``tags is …``).
    """
    message = str(exc)
    where, sep, why = message.partition(": ")
    if sep:
        for prefix, field in _LOCATIONS:
            if where == prefix or where.startswith(prefix + ".") or where.startswith(prefix + "["):
                return {"field": field, "detail": why}
    m = _FLAG.search(message)
    if m:
        flag = m.group(1)
        return {"field": _FIELD_OF_FLAG.get(flag, flag.replace("-", "_")), "detail": message}
    first = message.split(" ", 1)[0]
    if first in {"key", "title", "tags", "description", "cid", "mime", "size", "duration_ms",
                 "license", "price", "currency", "terms", "payout_evm", "payout_stellar"}:  # fmt: skip
        return {"field": first, "detail": message}
    return {"field": "", "detail": message}


def _invalid(exc: Exception) -> PageProblem:
    err = field_error(exc)
    return PageProblem(422, "Invalid field", str(exc), errors=[err])


def fields_of(raw: bytes) -> dict[str, Any]:
    """A page write's body: one JSON object of fields (else 400)."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise PageProblem(400, "Bad request", "the body is not JSON") from None
    if type(doc) is not dict:
        raise PageProblem(400, "Bad request", "the body is one JSON object of fields")
    return doc


class PageWrites:
    """The page's writes for one node: each builds its body as the CLI does, then publishes it."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def put(self, key: str, doc: dict[str, Any], *, edit: bool) -> dict[str, Any]:
        """Publish (``edit=False``) or edit the asset ``key`` from the form's fields ``doc``."""
        try:
            uri = AssetUri.of(self.node.keys.author.public, key) if edit else None
            key, fields = asset_fields_of(
                {**doc, "key": key}, base=None, payout_evm=self._payout_evm, require_title=not edit
            )
            base = await trio.to_thread.run_sync(put_of, self.node.store, uri) if uri is not None else None
            body = put_body(fields, base)
            if edit and doc.get("tags") == []:
                body["tags"] = []  # the form's tags, cleared (the CLI gives no way to say "none")
            check_write(kind="asset.put", key=key, body=body)
        except ProtocolError as exc:
            raise _invalid(exc) from None
        except NotFoundError:
            raise
        except NodeError as exc:
            raise _invalid(exc) from None
        return _written(await self.node.publish(kind="asset.put", key=key, body=body))

    def _payout_evm(self, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value == "me":
            if self.node.keys.evm_key is None:
                raise NodeError(
                    "--payout-evm me: this node has no EVM account yet (empressa node evm-account)"
                )
            from .evm import account_address

            return account_address(self.node.keys.evm_key)
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise NodeError(f"--payout-evm {value!r:.60} is not a 0x address of 20 bytes (or `me`)")
        return value

    async def delete(self, key: str) -> dict[str, Any]:
        """Delete the asset ``key`` (:class:`~node.errors.NotFoundError` if there is none, or it is deleted)."""
        try:
            uri = AssetUri.of(self.node.keys.author.public, key)
        except ProtocolError as exc:
            raise _invalid(exc) from None
        await trio.to_thread.run_sync(put_of, self.node.store, uri)
        return _written(await self.node.publish(kind="asset.delete", key=key, body={}))


def _written(e: Any) -> dict[str, Any]:
    return {"uri": e.uri.text, "hash": e.hash.cid, "seq": e.seq}
