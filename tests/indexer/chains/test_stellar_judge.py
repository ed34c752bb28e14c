"""The Stellar license rule on single Horizon records (pure: no Horizon, no database).

The records are built by the fake Horizon (``horizon.py``) in Horizon's documented shapes.
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import pytest

from indexer.chains.stellar import MalformedRecord, Terms, asset_text, hash_memo, judge, wanted_asset
from indexer.store.payments import PayoutAsset
from protocol import AssetUri, Signer

from .horizon import Asset, FakeHorizon, account_id

SELLER = account_id()
ISSUER = account_id()
URI = AssetUri(Signer(b"\x05" * 32).public, "track")
ASSET = PayoutAsset(uri=URI.text, did=URI.author.did, id_hash=URI.id_hash, amount="2.5", currency="XLM")
TERMS = Terms(SELLER, {URI.id_hash: ASSET}, {"USDC": ISSUER})


def record(fake: FakeHorizon, **kw: Any) -> dict[str, Any]:
    """A payments-page record with its transaction joined, as ``/accounts/{id}/payments`` gives it."""
    kw.setdefault("to", SELLER)
    kw.setdefault("memo", ("hash", URI.id_hash))
    r = fake.pay(**kw)
    (op,) = [o for o in fake.ops if o.record is r]
    return {**r, "transaction": op.tx}


@pytest.mark.parametrize(
    ("kw", "status"),
    [
        ({"amount": "2.5000000"}, "licensed"),
        ({"amount": "2.5000001"}, "licensed"),
        ({"amount": "2.4999999"}, "underpaid"),
        ({"amount": "2.5000000", "kind": "path_payment_strict_receive"}, "licensed"),
        ({"amount": "2.5000000", "asset": Asset("XLM", ISSUER)}, "wrong-asset"),  # an issued "XLM"
        ({"amount": "2.5000000", "asset": Asset("USDC", ISSUER)}, "wrong-asset"),
        ({"amount": "2.5000000", "memo": ("return", URI.id_hash)}, "wrong-memo"),
        ({"amount": "2.5000000", "memo": ("text", "track")}, "wrong-memo"),
        ({"amount": "2.5000000", "memo": None}, "wrong-memo"),
        ({"amount": "2.5000000", "memo": ("hash", b"\x00" * 32)}, "wrong-memo"),
        ({"amount": "2.5000000", "successful": False}, "failed"),
        ({"amount": "1.0000000", "memo": None, "successful": False}, "failed"),
    ],
)
def test_verdicts(kw: dict[str, Any], status: str) -> None:
    verdict = judge(record(FakeHorizon(), **kw), TERMS)
    assert verdict is not None and verdict.status == status
    names_it = kw.get("memo", ("hash", URI.id_hash)) == ("hash", URI.id_hash)
    assert verdict.uri == (URI.text if names_it else None)
    assert isinstance(verdict.amount, Decimal) and verdict.amount == Decimal(kw["amount"])


def test_records_that_are_not_payments_to_the_account_are_skipped() -> None:
    fake = FakeHorizon()
    assert judge(fake.fund(SELLER), TERMS) is None
    assert judge(fake.merge(account_id(), into=SELLER), TERMS) is None
    assert judge(record(fake, to=account_id(), sender=SELLER, amount="9.0000000"), TERMS) is None


def test_issued_price_currency() -> None:
    usdc = PayoutAsset(uri=URI.text, did=URI.author.did, id_hash=URI.id_hash, amount="1", currency="USDC")
    terms = Terms(SELLER, {URI.id_hash: usdc}, {"USDC": ISSUER})
    fake = FakeHorizon()
    ok = judge(record(fake, amount="1.0000000", asset=Asset("USDC", ISSUER)), terms)
    assert ok is not None and ok.status == "licensed" and ok.asset == f"USDC:{ISSUER}"
    forged = judge(record(fake, amount="1.0000000", asset=Asset("USDC", account_id())), terms)
    assert forged is not None and forged.status == "wrong-asset"
    assert (
        wanted_asset("USDC", {}) is None
        and wanted_asset("XLM", {}) == "XLM"
        and wanted_asset(None, {}) is None
    )


def test_memo_and_asset_edges() -> None:
    assert hash_memo({"memo_type": "hash", "memo": base64.b64encode(b"x" * 31).decode()}) is None
    assert hash_memo({"memo_type": "hash", "memo": "not base64!"}) is None
    assert hash_memo({"memo_type": "hash", "memo": base64.b64encode(b"x" * 32).decode()}) == b"x" * 32
    assert asset_text({"asset_type": "native"}) == "XLM"
    with pytest.raises(MalformedRecord):
        asset_text({"id": "1", "asset_type": "credit_alphanum4"})


def test_a_malformed_payment_is_refused() -> None:
    fake = FakeHorizon()
    good = record(fake, amount="3.0000000")
    for broken in (
        {k: v for k, v in good.items() if k != "amount"},
        {**good, "amount": "ten"},
        {**good, "amount": "-1.0000000"},
        {k: v for k, v in good.items() if k != "transaction"},  # no join=transactions
    ):
        with pytest.raises(MalformedRecord):
            judge(broken, TERMS)
