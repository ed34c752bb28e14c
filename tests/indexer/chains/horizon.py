"""A FAKE Horizon for the Stellar source's tests: no Horizon (nor a Stellar core) can run here.

It is a small HTTP server (threads, 127.0.0.1, a random port) that replays the
response shapes Horizon documents, so that the real
:class:`indexer.chains.stellar.StellarSource` talks to it through the real
stellar-sdk ``Server("http://127.0.0.1:PORT")``. It is a fake, not Horizon: it
keeps an in-memory ledger the test writes to (:meth:`FakeHorizon.fund`,
:meth:`FakeHorizon.pay`, :meth:`FakeHorizon.merge`) and serves only what the
source reads. Shapes follow Horizon's documentation:

* response format (HAL ``_links`` / ``_embedded.records``) and pagination
  (``cursor``, ``order``, ``limit`` 1..200, ``next``/``prev`` links carrying the
  paging tokens):
  https://developers.stellar.org/docs/data/apis/horizon/api-reference/structure/response-format
  https://developers.stellar.org/docs/data/apis/horizon/api-reference/structure/pagination
* an account's payments (``/accounts/{id}/payments``: ``payment``,
  ``path_payment_strict_receive/_send``, ``create_account``, ``account_merge``
  records with ``id``, ``paging_token``, ``type``, ``type_i``, ``created_at``,
  ``transaction_hash``, ``transaction_successful``, ``source_account``,
  ``asset_type``/``asset_code``/``asset_issuer``, ``from``, ``to``, ``amount``;
  ``join=transactions`` embeds each record's ``transaction``; ``include_failed``):
  https://developers.stellar.org/docs/data/apis/horizon/api-reference/get-payments-by-account-id
  https://developers.stellar.org/docs/data/apis/horizon/api-reference/resources/operations/object/payment
* the transaction object (``hash``, ``ledger``, ``created_at``, ``successful``,
  ``memo_type`` and ``memo``, base64 for a hash memo, the text for a text memo):
  https://developers.stellar.org/docs/data/apis/horizon/api-reference/resources/transactions/object
* the root endpoint (``horizon_version``, ``network_passphrase``,
  ``history_latest_ledger``…):
  https://developers.stellar.org/docs/data/apis/horizon/api-reference/get-root
* errors as problems (``type``, ``title``, ``status``, ``detail``; 404 "Resource
  Missing" for an account it does not know):
  https://developers.stellar.org/docs/data/apis/horizon/api-reference/errors/http-status-codes/horizon-specific/not-found

Account ids are real strkeys (:func:`account_id`: version byte, key, CRC16-XModem,
base32), built here so that the fake needs no stellar-sdk of its own.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

TESTNET = "Test SDF Network ; September 2015"
PUBNET = "Public Global Stellar Network ; September 2015"
TYPE_I = {
    "create_account": 0,
    "payment": 1,
    "path_payment_strict_receive": 2,
    "account_merge": 8,
    "path_payment_strict_send": 13,
}
_EPOCH = datetime(2026, 12, 1, tzinfo=UTC)


def _crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def account_id(key: bytes | None = None) -> str:
    """A Stellar account strkey (``G…``) for a 32-byte ed25519 key (a random one by default)."""
    key = secrets.token_bytes(32) if key is None else key
    payload = bytes([6 << 3]) + key
    return base64.b32encode(payload + _crc16_xmodem(payload).to_bytes(2, "little")).decode()


@dataclass
class Asset:
    """``native`` or an issued asset (code and issuer)."""

    code: str = "XLM"
    issuer: str | None = None

    def fields(self, prefix: str = "") -> dict[str, Any]:
        if self.issuer is None:
            return {f"{prefix}asset_type": "native"}
        kind = "credit_alphanum4" if len(self.code) <= 4 else "credit_alphanum12"
        return {
            f"{prefix}asset_type": kind,
            f"{prefix}asset_code": self.code,
            f"{prefix}asset_issuer": self.issuer,
        }


XLM = Asset()


@dataclass
class _Op:
    id: int
    accounts: tuple[str, ...]  # who it involves (an account's payments list it)
    record: dict[str, Any]
    tx: dict[str, Any]


@dataclass
class FakeHorizon:
    """The fake's state; :meth:`start` serves it. Thread-safe (one lock)."""

    passphrase: str = TESTNET
    ledger: int = 1000
    ops: list[_Op] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # accounts that exist (funded)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, query) served
    fail: list[int] = field(default_factory=list)  # statuses to answer the next requests with
    replay_from_start: int = 0  # this many payments pages ignore their cursor (a replayed page)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    # -- the ledger the test writes ------------------------------------------------------------

    def _close(self, *, source: str, memo: tuple[str, Any] | None, successful: bool) -> dict[str, Any]:
        self.ledger += 1
        at = (_EPOCH + timedelta(seconds=5 * self.ledger)).strftime("%Y-%m-%dT%H:%M:%SZ")
        tx: dict[str, Any] = {
            "id": secrets.token_hex(32),
            "paging_token": str(self.ledger << 32 | 1 << 12),
            "successful": successful,
            "ledger": self.ledger,
            "created_at": at,
            "source_account": source,
            "fee_charged": "100",
            "max_fee": "100",
            "operation_count": 1,
            "memo_type": "none",
        }
        tx["hash"] = tx["id"]
        if memo is not None:
            kind, value = memo
            tx["memo_type"] = kind
            if kind in ("hash", "return"):
                tx["memo"] = base64.b64encode(value).decode()
            elif kind == "text":
                tx["memo"] = value
                tx["memo_bytes"] = base64.b64encode(value.encode()).decode()
            else:  # id
                tx["memo"] = str(value)
        return tx

    def _add(
        self, kind: str, *, source: str, accounts: tuple[str, ...], body: dict[str, Any], **tx_kw: Any
    ) -> dict[str, Any]:
        with self.lock:
            tx = self._close(source=source, **tx_kw)
            op_id = self.ledger << 32 | 1 << 12 | 1
            record = {
                "_links": {
                    "self": {"href": f"/operations/{op_id}"},
                    "transaction": {"href": f"/transactions/{tx['hash']}"},
                    "effects": {"href": f"/operations/{op_id}/effects"},
                    "succeeds": {"href": f"/effects?order=desc&cursor={op_id}"},
                    "precedes": {"href": f"/effects?order=asc&cursor={op_id}"},
                },
                "id": str(op_id),
                "paging_token": str(op_id),
                "transaction_successful": tx["successful"],
                "source_account": source,
                "type": kind,
                "type_i": TYPE_I[kind],
                "created_at": tx["created_at"],
                "transaction_hash": tx["hash"],
                **body,
            }
            self.ops.append(_Op(op_id, accounts, record, tx))
            return record

    def fund(
        self, account: str, *, funder: str | None = None, balance: str = "10000.0000000"
    ) -> dict[str, Any]:
        """A ``create_account``: the account exists from now on."""
        funder = funder or account_id()
        self.known.add(account)
        return self._add(
            "create_account",
            source=funder,
            accounts=(funder, account),
            body={"starting_balance": balance, "funder": funder, "account": account},
            memo=None,
            successful=True,
        )

    def pay(
        self,
        *,
        to: str,
        amount: str,
        sender: str | None = None,
        asset: Asset = XLM,
        memo: tuple[str, Any] | None = None,
        successful: bool = True,
        kind: str = "payment",
    ) -> dict[str, Any]:
        """A payment (or ``path_payment_strict_*``) of ``amount`` (7-decimal string) of ``asset`` to ``to``;
        ``memo``: ``("hash", 32 bytes)``, ``("text", str)``, ``("id", int)``."""
        sender = sender or account_id()
        body: dict[str, Any] = {**asset.fields(), "from": sender, "to": to, "amount": amount}
        if kind != "payment":
            body.update(
                {**XLM.fields("source_"), "source_amount": amount, "path": []},
            )
            body["source_max" if kind == "path_payment_strict_receive" else "destination_min"] = amount
        return self._add(
            kind, source=sender, accounts=(sender, to), body=body, memo=memo, successful=successful
        )

    def merge(self, account: str, *, into: str) -> dict[str, Any]:
        """An ``account_merge`` of ``account`` into ``into``."""
        return self._add(
            "account_merge",
            source=account,
            accounts=(account, into),
            body={"account": account, "into": into},
            memo=None,
            successful=True,
        )

    # -- serving --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeHorizon:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path.rstrip("/") or "/"
        with self.lock:
            self.requests.append((path, query))
            status = self.fail.pop(0) if self.fail else None
        if status is not None:
            return self._problem(h, status, "Injected failure", "the test asked for this answer")
        segs = [s for s in path.split("/") if s]
        if not segs:
            return self._json(h, 200, self._root())
        if len(segs) == 2 and segs[0] == "accounts":
            if segs[1] not in self.known:
                return self._not_found(h)
            return self._json(h, 200, {"id": segs[1], "account_id": segs[1], "sequence": "1", "balances": []})
        if len(segs) == 3 and segs[0] == "accounts" and segs[2] == "payments":
            return self._payments(h, segs[1], path, query)
        return self._not_found(h)

    def _root(self) -> dict[str, Any]:
        with self.lock:
            ledger = self.ledger
        closed = (_EPOCH + timedelta(seconds=5 * ledger)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "_links": {"account": {"href": "/accounts/{account_id}", "templated": True}},
            "horizon_version": "2.32.0-fake",
            "core_version": "stellar-core 21.3.1 (fake)",
            "ingest_latest_ledger": ledger,
            "history_latest_ledger": ledger,
            "history_latest_ledger_closed_at": closed,
            "history_elder_ledger": 2,
            "core_latest_ledger": ledger,
            "network_passphrase": self.passphrase,
            "current_protocol_version": 21,
            "supported_protocol_version": 21,
            "core_supported_protocol_version": 21,
        }

    def _payments(self, h: BaseHTTPRequestHandler, account: str, path: str, q: dict[str, str]) -> None:
        if account not in self.known:
            return self._not_found(h)
        try:
            limit = int(q.get("limit", "10"))
            cursor = int(q["cursor"]) if q.get("cursor") not in (None, "", "now") else None
        except ValueError:
            return self._problem(h, 400, "Bad Request", "The request you sent was invalid in some way.")
        if not 1 <= limit <= 200:
            return self._problem(h, 400, "Bad Request", "limit: must be between 1 and 200")
        order = q.get("order", "asc")
        include_failed = q.get("include_failed") == "true"
        join = q.get("join") == "transactions"
        with self.lock:
            if self.replay_from_start > 0:
                self.replay_from_start -= 1
                cursor = None
            ops = [o for o in self.ops if account in o.accounts]
            if q.get("cursor") == "now":
                cursor = self.ops[-1].id if self.ops else 0
        if not include_failed:
            ops = [o for o in ops if o.tx["successful"]]
        ops.sort(key=lambda o: o.id, reverse=order == "desc")
        if cursor is not None:
            ops = [o for o in ops if (o.id > cursor if order == "asc" else o.id < cursor)]
        page = ops[:limit]
        records = []
        for o in page:
            r = dict(o.record)
            if join:
                r["transaction"] = dict(o.tx)
            records.append(r)

        def link(c: str, o: str) -> dict[str, str]:
            params = {"cursor": c, "limit": str(limit), "order": o}
            if join:
                params["join"] = "transactions"
            if include_failed:
                params["include_failed"] = "true"
            return {"href": f"{self.url}{path}?{urlencode(params)}"}

        last = records[-1]["paging_token"] if records else q.get("cursor", "")
        first = records[0]["paging_token"] if records else q.get("cursor", "")
        other = "desc" if order == "asc" else "asc"
        body = {
            "_links": {
                "self": link(q.get("cursor", ""), order),
                "next": link(last, order),
                "prev": link(first, other),
            },
            "_embedded": {"records": records},
        }
        self._json(h, 200, body)

    def _not_found(self, h: BaseHTTPRequestHandler) -> None:
        self._problem(
            h,
            404,
            "Resource Missing",
            "The resource at the url requested was not found.  This usually occurs for one of two reasons:  "
            "The url requested is not valid, or no data in our database could be found with the parameters "
            "provided.",
        )

    def _problem(self, h: BaseHTTPRequestHandler, status: int, title: str, detail: str) -> None:
        slug = {404: "not_found", 400: "bad_request", 429: "rate_limit_exceeded", 503: "service_unavailable"}
        body = {
            "type": f"https://stellar.org/horizon-errors/{slug.get(status, 'server_error')}",
            "title": title,
            "status": status,
            "detail": detail,
        }
        self._json(h, status, body, content_type="application/problem+json")

    def _json(
        self, h: BaseHTTPRequestHandler, status: int, body: Any, *, content_type: str = "application/hal+json"
    ) -> None:
        raw = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", f"{content_type}; charset=utf-8")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)
