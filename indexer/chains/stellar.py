"""stellar-sdk, for the indexer: the Stellar source, license payments read from Horizon.

This is the project's one file that imports ``stellar_sdk``; its errors (and
Horizon's answers) are translated here into :mod:`indexer.errors`.

What it follows
    The payout accounts (``payout.stellar``) that indexed, not deleted assets
    name (:meth:`~indexer.store.payments.Payments.payout_accounts`). For each,
    ``GET /accounts/{id}/payments?cursor=…&order=asc&limit=200&join=transactions
    &include_failed=true``, from the account's stored cursor (its
    ``chain_cursors`` row ``stellar:<network>/<account>``, ``data.cursor`` the
    last record's ``paging_token``), never from "now": a reconciler that was down
    misses nothing, and an account named later starts from the beginning of its
    history. Each page is judged (:func:`judge`) and applied with the cursor
    advance in one transaction (:meth:`~indexer.store.payments.Payments.record_page`);
    a page seen twice counts once (payments are keyed by Horizon's operation id).

What is a license
    A ``payment`` or path payment (``path_payment_strict_receive`` /
    ``_strict_send``, whose ``asset_*`` and ``amount`` are what the receiver got)
    *to* the account, in a successful transaction whose memo is a hash memo
    (``memo_type`` ``hash``, ``memo`` base64 of 32 bytes) equal to the id hash
    (:attr:`protocol.AssetUri.id_hash`) of one of the assets paying out to that
    account, in the price's currency (``XLM``: the native asset; another code:
    the issued asset of that code whose issuer ``stellar_assets`` names), of at
    least the price (amounts compared as :class:`~decimal.Decimal`, never float).
    Otherwise, in that order: ``failed`` (the transaction failed),
    ``wrong-memo`` (no hash memo, or one naming no asset of this account),
    ``wrong-asset`` (another asset or issuer, or an asset with no price or a
    currency this indexer cannot map), ``underpaid``. Other records
    (``create_account``, ``account_merge``, payments *from* the account…) are
    skipped, the cursor still moving past them.

Horizon, measured against stellar-sdk 16.1.1's sync ``Server``: a call raises
``stellar_sdk.exceptions.ConnectionError`` when Horizon cannot be reached,
``NotFoundError`` on 404, ``BadRequestError`` on any other 4xx (429 included)
and ``BadResponseError`` on 5xx; its ``RequestsClient`` retries 413/429/503/504
itself (``num_retries``), so the retries here are few and quick and the
reconciler's next poll is the real retry. Connection failures, 5xx and 429 are
:class:`~indexer.errors.ChainUnavailable` (cursor unchanged, retried); a
Horizon of another network, or one that cannot be reached when the source is
checked, is :class:`~indexer.errors.ChainConfigError`. An account Horizon does
not know (404: not funded yet) is logged once and retried every poll.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ..errors import ChainConfigError, ChainUnavailable
from ..store.payments import JudgedPayment, PayoutAsset
from .base import PollResult
from .settings import ChainSettings

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger(__name__)

PAGE_LIMIT = 200  # Horizon's largest page
MAX_PAGES_PER_ACCOUNT = 10  # per poll, so that one busy account does not starve the others
REQUEST_TIMEOUT = 15  # seconds per Horizon request
PASSPHRASES = {
    "testnet": "Test SDF Network ; September 2015",
    "pubnet": "Public Global Stellar Network ; September 2015",
}
PAYMENT_TYPES = ("payment", "path_payment_strict_receive", "path_payment_strict_send")
NATIVE = "XLM"


# -- the rule: one Horizon record -> a judged payment (pure) -----------------------------------


@dataclass(frozen=True)
class Terms:
    """What a payment to one account must be to license one of its assets."""

    account: str
    assets: dict[bytes, PayoutAsset]  # by id hash (the memo that names each)
    issuers: dict[str, str]  # price currency code -> issuer account (settings.stellar_assets)


class MalformedRecord(ValueError):
    """A Horizon record without the fields its type documents."""


def asset_text(record: dict[str, Any], prefix: str = "") -> str:
    """``XLM`` for the native asset, else ``CODE:ISSUER`` (``prefix``: ``source_`` for a path payment's sent side)."""
    kind = record.get(f"{prefix}asset_type")
    if kind == "native":
        return NATIVE
    code, issuer = record.get(f"{prefix}asset_code"), record.get(f"{prefix}asset_issuer")
    if kind not in ("credit_alphanum4", "credit_alphanum12") or not code or not issuer:
        raise MalformedRecord(
            f"record {record.get('id')} has no asset Horizon documents (asset_type={kind!r})"
        )
    return f"{code}:{issuer}"


def wanted_asset(currency: str | None, issuers: dict[str, str]) -> str | None:
    """The asset text a price currency is paid in, or None when it cannot be paid on Stellar here."""
    if currency is None:
        return None
    if currency == NATIVE:
        return NATIVE
    issuer = issuers.get(currency)
    return f"{currency}:{issuer}" if issuer else None


def hash_memo(tx: dict[str, Any]) -> bytes | None:
    """The 32 bytes of a transaction's hash memo (Horizon gives them in base64), else None."""
    if tx.get("memo_type") != "hash":
        return None
    try:
        raw = base64.b64decode(str(tx.get("memo", "")), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def judge(record: dict[str, Any], terms: Terms) -> JudgedPayment | None:
    """The verdict on one record of ``/accounts/{terms.account}/payments``; None for records that are
    not payments to the account (``create_account``, ``account_merge``, payments it sent…).

    Raises :class:`MalformedRecord` for a payment without the fields Horizon documents.
    """
    if record.get("type") not in PAYMENT_TYPES or record.get("to") != terms.account:
        return None
    try:
        payment_id = str(record["id"])
        tx_hash = str(record["transaction_hash"])
        sender = str(record["from"])
        amount = Decimal(str(record["amount"]))
    except (KeyError, InvalidOperation):
        raise MalformedRecord(
            f"payment record {record.get('id')} lacks id, transaction_hash, from or amount"
        ) from None
    if not amount.is_finite() or amount <= 0:
        raise MalformedRecord(f"payment record {payment_id} has amount {record['amount']!r}")
    tx = record.get("transaction")
    if not isinstance(tx, dict):
        raise MalformedRecord(f"payment record {payment_id} has no embedded transaction (join=transactions)")
    asset = asset_text(record)
    memo = hash_memo(tx)
    named = terms.assets.get(memo) if memo is not None else None
    successful = record.get("transaction_successful", tx.get("successful"))
    if successful is not True:
        status = "failed"
    elif named is None:
        status = "wrong-memo"
    elif (want := wanted_asset(named.currency, terms.issuers)) is None or asset != want:
        status = "wrong-asset"
    elif named.amount is None or amount < Decimal(named.amount):
        status = "underpaid"
    else:
        status = "licensed"
    return JudgedPayment(
        payment_id=payment_id,
        tx_hash=tx_hash,
        from_account=sender,
        to_account=terms.account,
        asset=asset,
        amount=amount,
        memo=memo,
        uri=named.uri if named is not None else None,
        status=status,
        paid_at=_time(record.get("created_at")) or _time(tx.get("created_at")),
    )


# -- the edge: stellar-sdk and Horizon's answers -> our errors ---------------------------------


class AccountUnknown(Exception):
    """Horizon answered 404 for an account (not funded yet)."""


@contextmanager
def horizon_errors(url: str, what: str, *, checking: bool = False) -> Iterator[None]:
    """stellar-sdk's request errors -> ChainUnavailable (transient) / ChainConfigError (the config)."""
    from stellar_sdk import exceptions as sx

    try:
        yield
    except sx.NotFoundError:
        raise AccountUnknown(what) from None
    except sx.ConnectionError as exc:
        cls = ChainConfigError if checking else ChainUnavailable
        raise cls(f"cannot reach Horizon at {url} ({what}): {_why(exc)}") from None
    except sx.BadResponseError as exc:
        raise ChainUnavailable(f"Horizon at {url} failed ({what}): HTTP {exc.status}") from None
    except sx.BadRequestError as exc:
        if exc.status == 429:
            raise ChainUnavailable(f"Horizon at {url} is rate-limiting us ({what}): HTTP 429") from None
        detail = exc.detail or exc.title or f"HTTP {exc.status}"
        raise ChainConfigError(f"Horizon at {url} refused {what}: {detail}") from None
    except (sx.BaseRequestError, ValueError) as exc:  # an unknown status, a body that is not JSON
        raise ChainUnavailable(f"Horizon at {url} gave an unusable answer ({what}): {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    inner = exc.__cause__ or (exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None)
    if isinstance(inner, BaseException):
        return type(inner).__name__
    return text.splitlines()[0][:200] if text else type(exc).__name__


def valid_account(account: str) -> bool:
    """Whether ``account`` is a valid Stellar account strkey (``G…``, checksum included)."""
    from stellar_sdk import StrKey

    try:
        return bool(StrKey.is_valid_ed25519_public_key(account))
    except Exception:
        return False


# -- the source ----------------------------------------------------------------------------------


@dataclass
class _AccountState:
    missing: bool = False  # Horizon did not know it last time (logged once)
    invalid: bool = False  # not a valid strkey (logged once, never asked for)


class StellarSource:
    """The Stellar :class:`~indexer.chains.base.ChainSource`: license payments to payout accounts.

    ``store`` is the indexer's :class:`~indexer.store.Store` (its ``payments``
    query group); ``page_limit`` is Horizon's ``limit`` per request and
    ``max_pages`` how many pages of one account a poll reads before it moves
    on to the next account (and reports ``more``).
    """

    def __init__(
        self,
        *,
        settings: ChainSettings,
        store: Store,
        page_limit: int = PAGE_LIMIT,
        max_pages: int = MAX_PAGES_PER_ACCOUNT,
    ) -> None:
        if settings.stellar_horizon_url is None:
            raise ChainConfigError("the Stellar source needs stellar_horizon_url")
        if not 1 <= page_limit <= PAGE_LIMIT or max_pages < 1:
            raise ValueError(f"page_limit must be 1..{PAGE_LIMIT} and max_pages at least 1")
        self.settings = settings
        self.store = store
        self.page_limit = page_limit
        self.max_pages = max_pages
        self.url = settings.stellar_horizon_url.rstrip("/")
        self.name = f"stellar:{settings.stellar_network}"
        self._accounts: dict[str, _AccountState] = {}
        self._server: Any = None

    @property
    def server(self) -> Any:
        if self._server is None:
            from stellar_sdk import Server
            from stellar_sdk.client.requests_client import RequestsClient

            client = RequestsClient(num_retries=1, backoff_factor=0.1, request_timeout=REQUEST_TIMEOUT)
            self._server = Server(self.url, client=client)
        return self._server

    # -- ChainSource ----------------------------------------------------------------------------

    def check(self) -> None:
        """Issuers are valid accounts, Horizon answers, and it serves the configured network."""
        for code, issuer in sorted(self.settings.stellar_assets.items()):
            if not valid_account(issuer):
                raise ChainConfigError(
                    f"stellar_assets: the issuer of {code} is not a valid Stellar account: {issuer}"
                )
        root = self._root(checking=True)
        want = PASSPHRASES[self.settings.stellar_network]
        got = root.get("network_passphrase")
        if got != want:
            raise ChainConfigError(
                f"Horizon at {self.url} serves the network {got!r}, not {self.settings.stellar_network} "
                f"({want!r}): check stellar_horizon_url and stellar_network"
            )
        log.info(
            "stellar source checked source=%s horizon=%s version=%s ledger=%s",
            self.name,
            self.url,
            root.get("horizon_version"),
            root.get("history_latest_ledger"),
        )

    def poll(self) -> PollResult:
        """Read every followed account's new payments from its stored cursor and apply them."""
        started = time.monotonic()
        root = self._root()
        head = _int(root.get("history_latest_ledger"))
        head_at = _time(root.get("history_latest_ledger_closed_at"))
        accounts = self.store.payments.payout_accounts()
        result = PollResult(head=head)
        behind_at: list[datetime] = []
        behind_ledgers: list[int] = []
        counts: dict[str, int] = {}
        for account in sorted(accounts):
            if not self._followable(account):
                continue
            terms = Terms(
                account, {a.id_hash: a for a in accounts[account]}, dict(self.settings.stellar_assets)
            )
            drained, last = self._follow(account, terms, result, counts)
            if not drained:
                result.more = True
                if last is not None:
                    behind_ledgers.append(last[0])
                    if last[1] is not None:
                        behind_at.append(last[1])
        if result.more:
            result.processed = min(behind_ledgers) if behind_ledgers else None
            oldest = min(behind_at) if behind_at else None
        else:
            result.processed = head
            oldest = head_at
        if result.processed is not None and head is not None:
            result.lag_blocks = max(0, head - result.processed)
        if oldest is not None:
            result.lag_seconds = max(0.0, time.time() - oldest.timestamp())
        result.extra = {
            "accounts": sum(1 for a in accounts if self._followable(a, quiet=True)),
            "unknown_accounts": sorted(a for a, s in self._accounts.items() if s.missing),
            "invalid_accounts": sorted(a for a, s in self._accounts.items() if s.invalid),
            "payments": counts,
        }
        if result.applied:
            log.info(
                "stellar payments applied source=%s payments=%d licensed=%d seconds=%.3f",
                self.name,
                result.applied,
                counts.get("licensed", 0),
                time.monotonic() - started,
            )
        return result

    # -- helpers --------------------------------------------------------------------------------

    def _root(self, *, checking: bool = False) -> dict[str, Any]:
        try:
            with horizon_errors(self.url, "the root endpoint", checking=checking):
                root = self.server.root().call()
        except AccountUnknown:
            raise ChainConfigError(f"{self.url} has no Horizon root endpoint (404)") from None
        if not isinstance(root, dict):
            raise ChainUnavailable(f"Horizon at {self.url} answered the root endpoint with no object")
        return root

    def _followable(self, account: str, *, quiet: bool = False) -> bool:
        state = self._accounts.setdefault(account, _AccountState())
        if state.invalid:
            return False
        if valid_account(account):
            return True
        state.invalid = True
        if not quiet:
            # A creator's record names it: one bad record must not stop every other account.
            log.warning("stellar payout account is not a valid account; not followed account=%s", account)
        return False

    def _cursor_source(self, account: str) -> str:
        return f"{self.name}/{account}"

    def _follow(
        self, account: str, terms: Terms, result: PollResult, counts: dict[str, int]
    ) -> tuple[bool, tuple[int, datetime | None] | None]:
        """Page through one account from its stored cursor; (drained, (ledger, time) of the last record)."""
        source = self._cursor_source(account)
        cursor = self.store.payments.cursor(source=source)
        state = self._accounts[account]
        last: tuple[int, datetime | None] | None = None
        for _ in range(self.max_pages):
            records = self._page(account, cursor, state)
            if records is None or not records:
                return True, last
            judged: list[JudgedPayment] = []
            for record in records:
                try:
                    verdict = judge(record, terms)
                except MalformedRecord as exc:
                    raise ChainUnavailable(f"Horizon at {self.url} sent a malformed record: {exc}") from None
                if verdict is not None:
                    judged.append(verdict)
            token = records[-1].get("paging_token")
            if not isinstance(token, str) or not token:
                raise ChainUnavailable(f"Horizon at {self.url} sent a record without a paging_token")
            new = self.store.payments.record_page(
                chain=self.name, cursor_source=source, account=account, cursor=token, payments=judged
            )
            for p in new:
                counts[p.status] = counts.get(p.status, 0) + 1
                log.info(
                    "stellar payment source=%s payment=%s status=%s uri=%s amount=%s asset=%s tx=%s",
                    self.name,
                    p.payment_id,
                    p.status,
                    p.uri,
                    p.amount,
                    p.asset,
                    p.tx_hash,
                )
            result.applied += len(new)
            cursor = token
            tx = records[-1].get("transaction")
            ledger = _int(tx.get("ledger")) if isinstance(tx, dict) else None
            last = (ledger if ledger is not None else 0, _time(records[-1].get("created_at")))
            if len(records) < self.page_limit:
                return True, last
            log.info("stellar source paging source=%s account=%s cursor=%s", self.name, account, cursor)
        return False, last

    def _page(self, account: str, cursor: str | None, state: _AccountState) -> list[dict[str, Any]] | None:
        builder = self.server.payments().for_account(account)
        if cursor is not None:
            builder = builder.cursor(cursor)
        builder = builder.order(desc=False).limit(self.page_limit).join("transactions").include_failed(True)
        try:
            with horizon_errors(self.url, f"the payments of {account}"):
                page = builder.call()
        except AccountUnknown:
            if not state.missing:
                log.warning(
                    "stellar payout account unknown to Horizon (not funded yet?); retrying each poll "
                    "source=%s account=%s",
                    self.name,
                    account,
                )
            state.missing = True
            return None
        if state.missing:
            log.info("stellar payout account now known to Horizon source=%s account=%s", self.name, account)
            state.missing = False
        records = page.get("_embedded", {}).get("records") if isinstance(page, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ChainUnavailable(f"Horizon at {self.url} sent a payments page without _embedded.records")
        return records


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["PASSPHRASES", "StellarSource", "Terms", "asset_text", "hash_memo", "judge", "valid_account"]
