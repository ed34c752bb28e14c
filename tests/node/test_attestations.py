"""What a node shows of bridges' attestations: the latest from a trusted key, nothing after a revocation,
nothing from keys it does not trust (its SQLite store, real entries)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node.store import Store
from protocol import AssetUri, Entry, Signer, attest_body, sign_entry

from .conftest import LogBuilder, now_ms


class Bridge:
    """A bridge key signing its own attest log."""

    def __init__(self) -> None:
        self.signer = Signer(secrets.token_bytes(32))
        self.entries: list[Entry] = []

    def attest(self, put: Entry, status: str, onchain_id: str, chain: str = "eip155:31337") -> Entry:
        prev = self.entries[-1] if self.entries else None
        e = sign_entry(
            self.signer,
            seq=len(self.entries) + 1,
            prev=prev.hash if prev else None,
            ts=now_ms(),
            kind="attest",
            key=put.uri.id_b32,
            body=attest_body(
                put.uri, subject=put.hash.raw, status=status, chain=chain, onchain_id=onchain_id, tx="0x01"
            ),
        )
        self.entries.append(e)
        return e


def shown(store: Store, uri: AssetUri, *trusted: Bridge) -> dict[str, Any] | None:
    items = store.library(local_only=False, trusted={b.signer.public for b in trusted})
    (item,) = [i for i in items if i["uri"] == uri.text]
    return item["verification"]  # type: ignore[no-any-return]


def test_only_trusted_keys_count_and_the_latest_word_stands(
    tmp_path: Path, new_log: Callable[..., LogBuilder]
) -> None:
    store = Store.open(tmp_path / "node.db")
    try:
        creator = new_log()
        song, other = creator.next(key="song"), creator.next(key="other")
        trusted, stranger = Bridge(), Bridge()
        store.ingest(creator.entries)
        assert shown(store, song.uri, trusted) is None

        store.ingest([trusted.attest(song, "verified", "3")])
        v = shown(store, song.uri, trusted)
        assert v is not None
        assert (v["status"], v["chain"], v["onchain_id"], v["by"]) == (
            "verified",
            "eip155:31337",
            "3",
            trusted.signer.public.did,
        )
        assert shown(store, other.uri, trusted) is None, "only the attested asset"
        assert shown(store, song.uri) is None, "a node that trusts no bridge shows nothing"

        # A stranger's word changes nothing, whether it verifies or revokes.
        store.ingest([stranger.attest(other, "verified", "9"), stranger.attest(song, "revoked", "3")])
        assert shown(store, other.uri, trusted) is None
        assert shown(store, song.uri, trusted)["onchain_id"] == "3"  # type: ignore[index]
        assert shown(store, other.uri, stranger)["onchain_id"] == "9"  # type: ignore[index]

        store.ingest([trusted.attest(song, "revoked", "3")])
        assert shown(store, song.uri, trusted) is None, "a revoked attestation undoes it"
        store.ingest([trusted.attest(song, "verified", "4")])
        assert shown(store, song.uri, trusted)["onchain_id"] == "4"  # type: ignore[index]
        assert len(store.verifications([song.uri, other.uri], trusted={trusted.signer.public})) == 1
    finally:
        store.close()
