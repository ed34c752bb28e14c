"""sign_entry against a deliberately simple reference: encode with ``sig``, then ``parse_and_verify``.

``sign_entry`` validates once and splices the signature into the bytes it
signed instead of re-parsing and re-verifying its own output. These properties
hold it to the slow path it replaced: over varied valid bodies it gives the
same bytes and the same :class:`Entry` that ``parse_and_verify`` makes of them;
over arbitrary bodies it refuses exactly what the reference refuses.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import EntryHash, ProtocolError, Signer, canonical_bytes, parse_and_verify, schema, sign_entry

from .strategies import asset_keys, attest_bodies, plain_data, positions, put_bodies, signers, uints


def reference(
    signer: Signer, *, seq: int, prev: EntryHash | None, ts: int, kind: str, key: str, body: Any
) -> bytes:
    """The signed entry's bytes, made the obvious way (raises ProtocolError when ``parse_and_verify`` would)."""
    m = {
        "v": schema.VERSION,
        "author": signer.public.raw,
        "seq": seq,
        "prev": prev.raw if prev is not None else None,
        "ts": ts,
        "kind": kind,
        "key": key,
        "body": body,
    }
    try:
        signed = {**m, "sig": signer.sign(canonical_bytes(m))}
        raw = canonical_bytes(signed)
    except Exception as exc:
        raise ProtocolError(f"unencodable: {exc}") from None
    parse_and_verify(raw, now_ms=None)
    return raw


SLOW = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SLOW
@given(signer=signers, pos=positions(), ts=uints, key=asset_keys, body=put_bodies)
def test_a_signed_put_is_what_parse_and_verify_makes_of_its_bytes(
    signer: Signer, pos: tuple[int, EntryHash | None], ts: int, key: str, body: dict[str, Any]
) -> None:
    seq, prev = pos
    e = sign_entry(signer, seq=seq, prev=prev, ts=ts, kind="asset.put", key=key, body=body)
    assert e.raw == reference(signer, seq=seq, prev=prev, ts=ts, kind="asset.put", key=key, body=body)
    assert parse_and_verify(e.raw, now_ms=None) == e


@SLOW
@given(signer=signers, pos=positions(), ts=uints, attest=attest_bodies(), delete_key=asset_keys)
def test_signed_attestations_and_deletes_verify(
    signer: Signer,
    pos: tuple[int, EntryHash | None],
    ts: int,
    attest: tuple[str, dict[str, Any]],
    delete_key: str,
) -> None:
    seq, prev = pos
    key, body = attest
    a = sign_entry(signer, seq=seq, prev=prev, ts=ts, kind="attest", key=key, body=body)
    assert parse_and_verify(a.raw, now_ms=None) == a
    d = sign_entry(signer, seq=seq, prev=prev, ts=ts, kind="asset.delete", key=delete_key, body={})
    assert parse_and_verify(d.raw, now_ms=None) == d


def _mutations() -> st.SearchStrategy[tuple[str, Any]]:
    fields = st.sampled_from(
        ["title", "description", "tags", "media", "license", "payout", "preview", "extra"]
    )
    return st.tuples(fields, plain_data)


@SLOW
@given(signer=signers, key=asset_keys, body=put_bodies, change=_mutations(), seq=st.integers(-3, 3))
def test_sign_entry_refuses_exactly_what_the_reference_refuses(
    signer: Signer, key: str, body: dict[str, Any], change: tuple[str, Any], seq: int
) -> None:
    field, value = change
    body = {**body, field: value}
    prev = None if seq == 1 else EntryHash(b"\x01" * 32)
    fields: dict[str, Any] = dict(
        seq=seq, prev=prev, ts=1_700_000_000_000, kind="asset.put", key=key, body=body
    )
    try:
        want: bytes | None = reference(signer, **fields)
    except ProtocolError:
        want = None
    if want is None:
        with pytest.raises(ProtocolError):
            sign_entry(signer, **fields)
    else:
        e = sign_entry(signer, **fields)
        assert e.raw == want and parse_and_verify(e.raw, now_ms=None) == e


def test_body_key_order_does_not_matter() -> None:
    signer = Signer(b"\x07" * 32)
    body = {
        "title": "T",
        "tags": [],
        "description": "",
        "license": {"type": "personal"},
        "media": {
            "size": 1,
            "mime": "audio/wav",
            "cid": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy",
        },
    }
    e = sign_entry(signer, seq=1, prev=None, ts=5, kind="asset.put", key="k", body=body)
    assert parse_and_verify(e.raw, now_ms=None) == e
    assert list(e.body) == ["tags", "media", "title", "license", "description"]  # canonical: length first
