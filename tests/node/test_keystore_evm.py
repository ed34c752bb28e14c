"""The keystore's optional third secret, the creator's EVM account: created once, sealed like the others."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from node.errors import KeystoreError
from node.keystore import (
    Keys,
    create_keystore,
    ensure_evm_key,
    open_keystore,
    unlock_with_evm_from,
)

from .test_keystore import assert_absent, edit, flip_b64

PASS = "correct horse battery staple"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "node" / "keystore.json"


@pytest.fixture
def old_keys(path: Path) -> Keys:
    """A keystore as every earlier version wrote it: author and peer only."""
    return create_keystore(path, passphrase=PASS, kdf_strength="min")


def address(keys: Keys) -> str:
    assert keys.evm_key is not None
    return str(Account.from_key(keys.evm_key).address)


def test_an_old_keystore_has_no_evm_key_and_still_opens(path: Path, old_keys: Keys) -> None:
    assert "evm" not in json.loads(path.read_text())["secrets"]
    keys = open_keystore(path, passphrase=PASS)
    assert keys.evm_key is None and keys.did == old_keys.did


def test_the_account_is_created_once_and_kept(path: Path, old_keys: Keys) -> None:
    keys, created = ensure_evm_key(path, passphrase=PASS)
    assert created
    first = address(keys)
    assert first.startswith("0x") and len(first) == 42
    # The other secrets are untouched; the file still opens the plain way, now with the key.
    assert (keys.did, keys.author.seed, keys.peer_seed) == (
        old_keys.did,
        old_keys.author.seed,
        old_keys.peer_seed,
    )
    reopened = open_keystore(path, passphrase=PASS)
    assert address(reopened) == first
    again, created = ensure_evm_key(path, passphrase=PASS)
    assert not created and address(again) == first


def test_the_same_address_after_a_restart_from_the_environment(path: Path, old_keys: Keys) -> None:
    keys, created = unlock_with_evm_from(path, environ={"EMPRESSA_PASSPHRASE": PASS}, prompt=None)
    assert created
    later, created = unlock_with_evm_from(path, environ={"EMPRESSA_PASSPHRASE": PASS}, prompt=None)
    assert not created and address(later) == address(keys)


def test_a_kek_keystore_gains_it_too(path: Path) -> None:
    kek = os.urandom(32)
    create_keystore(path, kek=kek)
    keys, created = ensure_evm_key(path, kek=kek)
    assert created and address(open_keystore(path, kek=kek)) == address(keys)


def test_the_file_stays_0600_and_holds_no_raw_key(path: Path, old_keys: Keys) -> None:
    keys, _ = ensure_evm_key(path, passphrase=PASS)
    assert keys.evm_key is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert_absent(keys.evm_key, path.read_bytes())
    assert not list(path.parent.glob(".keystore.json.*.tmp")), "a temporary file was left behind"


def test_repr_and_logs_hide_the_key(path: Path, old_keys: Keys, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        keys, _ = ensure_evm_key(path, passphrase=PASS)
    assert keys.evm_key is not None
    assert "evm_key=<hidden>" in repr(keys)
    assert_absent(keys.evm_key, repr(keys).encode() + str(keys).encode())
    assert_absent(keys.evm_key, caplog.text.encode())
    assert "gained an EVM account" in caplog.text


def test_a_wrong_passphrase_fails_and_changes_nothing(path: Path, old_keys: Keys) -> None:
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        ensure_evm_key(path, passphrase="not it")
    assert path.read_bytes() == before


def _evm(d: dict[str, Any]) -> dict[str, str]:
    return d["secrets"]["evm"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _evm(d).update(ciphertext=flip_b64(_evm(d)["ciphertext"])),
        lambda d: _evm(d).update(data_key=flip_b64(_evm(d)["data_key"])),
        # Removing the account (to make the node make a new one) is caught by the check too.
        lambda d: d["secrets"].pop("evm"),
        # So is swapping it with another secret: each still decrypts.
        lambda d: d["secrets"].update(evm=d["secrets"]["peer"], peer=d["secrets"]["evm"]),
    ],
)
def test_tampering_with_the_evm_secret_is_caught(path: Path, old_keys: Keys, change: Any) -> None:
    ensure_evm_key(path, passphrase=PASS)
    edit(path, change)
    with pytest.raises(KeystoreError, match="is corrupt or was tampered with"):
        open_keystore(path, passphrase=PASS)
    with pytest.raises(KeystoreError, match="is corrupt or was tampered with"):
        ensure_evm_key(path, passphrase=PASS)


def test_an_unknown_secret_is_malformed(path: Path, old_keys: Keys) -> None:
    edit(path, lambda d: d["secrets"].update(other=d["secrets"]["peer"]))
    with pytest.raises(KeystoreError, match="is malformed"):
        open_keystore(path, passphrase=PASS)


def test_concurrent_first_uses_make_one_account(path: Path, old_keys: Keys) -> None:
    results: list[str] = []
    go = threading.Barrier(4)

    def first_use() -> None:
        go.wait()
        keys, _ = ensure_evm_key(path, passphrase=PASS)
        results.append(address(keys))

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert address(open_keystore(path, passphrase=PASS)) == results[0]


def test_keys_refuse_an_out_of_range_evm_key(old_keys: Keys) -> None:
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    for bad in (bytes(32), n.to_bytes(32, "big"), b"\x01" * 31):
        with pytest.raises(ValueError, match="secp256k1"):
            Keys(author=old_keys.author, peer_seed=old_keys.peer_seed, evm_key=bad)
