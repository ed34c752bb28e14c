"""The envelope-encrypted keystore: round trips, clear errors, nothing secret on disk or in reprs."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import nacl.pwhash.argon2id as argon2id
import pytest

from node import keystore as ks
from node.errors import KeystoreError, NodeError
from node.keystore import (
    Keys,
    create_keystore,
    kek_from_env,
    open_keystore,
    parse_kek,
    read_public_did,
    unlock_from,
)
from protocol import Signer, parse_did

PASS = "correct horse battery staple"


def encodings(secret: bytes) -> list[bytes]:
    """Every form a leaked 32-byte secret could plausibly take in a text file."""
    forms = [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b32encode(secret),
    ]
    # Unpadded variants, and the payload without the last (partial) base64 group.
    forms += [f.rstrip(b"=") for f in forms[3:]]
    forms.append(base64.b64encode(secret)[:40])
    return forms


def assert_absent(secret: bytes, haystack: bytes) -> None:
    for form in encodings(secret):
        assert form not in haystack, f"secret found in the form {form[:12]!r}…"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "node" / "keystore.json"


@pytest.fixture
def pass_keys(path: Path) -> Keys:
    return create_keystore(path, passphrase=PASS, kdf_strength="min")


def edit(path: Path, change: Any) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def flip_b64(text: str, index: int = -5) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- round trips -----------------------------------------------------------------


def test_passphrase_round_trip(path: Path, pass_keys: Keys) -> None:
    opened = open_keystore(path, passphrase=PASS)
    assert opened.author.seed == pass_keys.author.seed
    assert opened.peer_seed == pass_keys.peer_seed
    assert opened == pass_keys
    assert len(opened.peer_seed) == 32
    assert opened.author.seed != opened.peer_seed
    assert opened.did == pass_keys.author.public.did
    assert parse_did(opened.did) == opened.author.public
    # The signer really is the stored key.
    assert opened.author.sign(b"m") == pass_keys.author.sign(b"m")


def test_two_keystores_hold_different_keys(tmp_path: Path) -> None:
    a = create_keystore(tmp_path / "a.json", passphrase=PASS, kdf_strength="min")
    b = create_keystore(tmp_path / "b.json", passphrase=PASS, kdf_strength="min")
    assert a.author.seed != b.author.seed
    assert a.peer_seed != b.peer_seed
    assert (
        json.loads((tmp_path / "a.json").read_text())["kek"]["salt"]
        != json.loads((tmp_path / "b.json").read_text())["kek"]["salt"]
    )


def test_public_did_is_readable_without_unlocking(path: Path, pass_keys: Keys) -> None:
    assert read_public_did(path) == pass_keys.did
    assert read_public_did(path).startswith("did:key:z6Mk")


@pytest.mark.parametrize("form", ["hex", "HEX", "base64"])
def test_kek_round_trip(path: Path, form: str) -> None:
    kek = os.urandom(32)
    text = {"hex": kek.hex(), "HEX": kek.hex().upper(), "base64": base64.b64encode(kek).decode()}[form]
    assert parse_kek(text) == kek
    assert parse_kek(f"  {text}\n") == kek
    keys = create_keystore(path, kek=kek)
    assert json.loads(path.read_text())["kek"] == {"kind": "kek"}

    env = {"EMPRESSA_KEK": text}
    assert kek_from_env(env) == (None, kek)
    opened = unlock_from(path, environ=env, prompt=None)
    assert opened == keys
    assert open_keystore(path, kek=kek) == keys


def test_passphrase_file_records_kdf_params(path: Path, pass_keys: Keys) -> None:
    kek = json.loads(path.read_text())["kek"]
    assert kek["kind"] == "passphrase"
    assert kek["kdf"] == "argon2id"
    assert len(base64.b64decode(kek["salt"])) == 16
    assert (kek["opslimit"], kek["memlimit"]) == (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)


def test_default_strength_is_interactive(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def fake_kdf(size: int, password: bytes, salt: bytes, *, opslimit: int, memlimit: int) -> bytes:
        calls.append((opslimit, memlimit))
        return bytes(size)

    monkeypatch.setattr(argon2id, "kdf", fake_kdf)  # keep the test fast
    create_keystore(path, passphrase=PASS)
    assert calls == [(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)]
    kek = json.loads(path.read_text())["kek"]
    assert (kek["opslimit"], kek["memlimit"]) == calls[0]


def test_unicode_passphrase_is_normalised(path: Path) -> None:
    keys = create_keystore(path, passphrase="caf\u00e9", kdf_strength="min")  # precomposed é
    assert open_keystore(path, passphrase="cafe\u0301") == keys  # e + combining acute


# --- wrong secrets ---------------------------------------------------------------


def test_wrong_passphrase(path: Path, pass_keys: Keys) -> None:
    with pytest.raises(KeystoreError, match=r"^wrong passphrase for keystore ") as info:
        open_keystore(path, passphrase=PASS + "!")
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "\n" not in str(info.value)
    assert PASS not in str(info.value)
    assert isinstance(info.value, NodeError)


def test_wrong_passphrase_from_env_and_prompt(path: Path, pass_keys: Keys) -> None:
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        unlock_from(path, environ={"EMPRESSA_PASSPHRASE": "nope"}, prompt=None)
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        unlock_from(path, environ={}, prompt=lambda _: "nope")


def test_wrong_kek(path: Path) -> None:
    create_keystore(path, kek=os.urandom(32))
    other = os.urandom(32)
    with pytest.raises(KeystoreError, match=r"^wrong EMPRESSA_KEK for keystore ") as info:
        open_keystore(path, kek=other)
    assert str(path) in str(info.value)
    assert other.hex() not in str(info.value)
    with pytest.raises(KeystoreError, match="wrong EMPRESSA_KEK"):
        unlock_from(path, environ={"EMPRESSA_KEK": other.hex()}, prompt=None)


def test_kek_for_a_passphrase_keystore_is_a_clear_error(path: Path, pass_keys: Keys) -> None:
    with pytest.raises(KeystoreError, match="was created with a passphrase"):
        open_keystore(path, kek=os.urandom(32))
    with pytest.raises(KeystoreError, match="was created with a passphrase"):
        unlock_from(path, environ={"EMPRESSA_KEK": os.urandom(32).hex()}, prompt=lambda _: PASS)


def test_passphrase_for_a_kek_keystore_is_a_clear_error(path: Path) -> None:
    create_keystore(path, kek=os.urandom(32))
    with pytest.raises(KeystoreError, match="was created with EMPRESSA_KEK"):
        open_keystore(path, passphrase=PASS)
    with pytest.raises(KeystoreError, match=r"locked.*EMPRESSA_KEK"):
        unlock_from(path, environ={"EMPRESSA_PASSPHRASE": PASS}, prompt=lambda _: PASS)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "00" * 31,  # 62 hex characters
        "00" * 33,  # 66 hex characters
        "zz" * 32,  # 64 characters, not hex
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # url-safe alphabet is not standard base64
    ],
)
def test_malformed_kek_text(text: str) -> None:
    with pytest.raises(KeystoreError, match="EMPRESSA_KEK must be 32 bytes") as info:
        parse_kek(text)
    if text:
        assert text not in str(info.value)
    if text.strip():
        with pytest.raises(KeystoreError, match="EMPRESSA_KEK must be"):
            kek_from_env({"EMPRESSA_KEK": text})


def test_kek_bytes_must_be_32(path: Path) -> None:
    with pytest.raises(KeystoreError, match="32 bytes"):
        create_keystore(path, kek=bytes(31))
    assert not path.exists()


# --- environment and prompt ------------------------------------------------------


def test_kek_from_env() -> None:
    kek = os.urandom(32)
    assert kek_from_env({}) == (None, None)
    assert kek_from_env({"EMPRESSA_PASSPHRASE": "pw"}) == ("pw", None)
    assert kek_from_env({"EMPRESSA_KEK": kek.hex()}) == (None, kek)
    assert kek_from_env({"EMPRESSA_KEK": kek.hex(), "EMPRESSA_PASSPHRASE": "pw"}) == (None, kek)
    assert kek_from_env({"EMPRESSA_KEK": "", "EMPRESSA_PASSPHRASE": ""}) == (None, None)


def test_locked_without_env_or_prompt(path: Path, pass_keys: Keys) -> None:
    with pytest.raises(
        KeystoreError,
        match=r"^keystore is locked: set EMPRESSA_PASSPHRASE or EMPRESSA_KEK, or run interactively",
    ):
        unlock_from(path, environ={}, prompt=None)


def test_locked_kek_keystore_without_env(path: Path) -> None:
    create_keystore(path, kek=os.urandom(32))
    with pytest.raises(KeystoreError, match=r"locked.*set EMPRESSA_KEK"):
        unlock_from(path, environ={}, prompt=lambda _: PASS)


@pytest.mark.parametrize("answer", ["", EOFError])
def test_empty_or_closed_prompt_is_locked(path: Path, pass_keys: Keys, answer: Any) -> None:
    def prompt(_: str) -> str:
        if answer is EOFError:
            raise EOFError
        return str(answer)

    with pytest.raises(KeystoreError, match="locked: no passphrase given"):
        unlock_from(path, environ={}, prompt=prompt)


def test_prompt_is_asked_when_env_is_empty(path: Path, pass_keys: Keys) -> None:
    asked: list[str] = []

    def prompt(message: str) -> str:
        asked.append(message)
        return PASS

    assert unlock_from(path, environ={"EMPRESSA_PASSPHRASE": ""}, prompt=prompt) == pass_keys
    assert asked == ["Keystore passphrase: "]


def test_env_passphrase_wins_over_prompt(path: Path, pass_keys: Keys) -> None:
    def prompt(_: str) -> str:
        raise AssertionError("must not prompt when EMPRESSA_PASSPHRASE is set")

    assert unlock_from(path, environ={"EMPRESSA_PASSPHRASE": PASS}, prompt=prompt) == pass_keys


def test_both_env_vars_each_unlock_their_own_kind(tmp_path: Path) -> None:
    kek = os.urandom(32)
    env = {"EMPRESSA_PASSPHRASE": PASS, "EMPRESSA_KEK": base64.b64encode(kek).decode()}
    by_pass = create_keystore(tmp_path / "p.json", passphrase=PASS, kdf_strength="min")
    by_kek = create_keystore(tmp_path / "k.json", kek=kek)
    assert unlock_from(tmp_path / "p.json", environ=env, prompt=None) == by_pass
    assert unlock_from(tmp_path / "k.json", environ=env, prompt=None) == by_kek


# --- creating --------------------------------------------------------------------


def test_refuses_to_overwrite(path: Path, pass_keys: Keys) -> None:
    before = path.read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(path, passphrase="other", kdf_strength="min")
    with pytest.raises(KeystoreError, match="already exists"):
        create_keystore(path, kek=os.urandom(32))
    assert path.read_bytes() == before
    assert open_keystore(path, passphrase=PASS) == pass_keys


def test_file_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "fresh" / "keystore.json"
        create_keystore(path, passphrase=PASS, kdf_strength="min")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["keystore.json"]  # no temp file left behind


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"passphrase": PASS, "kek": bytes(32)}, "exactly one"),
        ({"passphrase": ""}, "must not be empty"),
        ({"passphrase": PASS, "kdf_strength": "weak"}, "kdf_strength"),
    ],
)
def test_create_argument_errors(path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(KeystoreError, match=message):
        create_keystore(path, **kwargs)
    assert not path.exists()


def test_open_needs_exactly_one_secret(path: Path, pass_keys: Keys) -> None:
    with pytest.raises(KeystoreError, match="exactly one"):
        open_keystore(path)
    with pytest.raises(KeystoreError, match="exactly one"):
        open_keystore(path, passphrase=PASS, kek=bytes(32))


# --- nothing secret leaks --------------------------------------------------------


def test_seeds_are_not_in_the_file(path: Path, pass_keys: Keys) -> None:
    raw = path.read_bytes()
    assert_absent(pass_keys.author.seed, raw)
    assert_absent(pass_keys.peer_seed, raw)
    assert PASS.encode() not in raw
    # The file does hold the public did, in clear.
    assert pass_keys.did.encode() in raw


def test_seeds_and_kek_are_not_in_a_kek_file(path: Path) -> None:
    kek = os.urandom(32)
    keys = create_keystore(path, kek=kek)
    raw = path.read_bytes()
    assert_absent(keys.author.seed, raw)
    assert_absent(keys.peer_seed, raw)
    assert_absent(kek, raw)


def test_repr_hides_secrets(pass_keys: Keys) -> None:
    texts = [repr(pass_keys), str(pass_keys), f"{pass_keys}", f"{pass_keys!r}", repr([pass_keys])]
    for text in texts:
        assert pass_keys.did in text
        for secret in (pass_keys.author.seed, pass_keys.peer_seed):
            assert repr(secret) not in text
            assert_absent(secret, text.encode())


def test_keys_validates_peer_seed() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Keys(author=Signer(bytes(32)), peer_seed=b"short")


def test_logs_hold_no_secrets(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        keys = create_keystore(path, passphrase=PASS, kdf_strength="min")
        open_keystore(path, passphrase=PASS)
    logged = "\n".join(r.getMessage() for r in caplog.records).encode()
    assert keys.did.encode() in logged
    assert_absent(keys.author.seed, logged)
    assert_absent(keys.peer_seed, logged)
    assert PASS.encode() not in logged


# --- damaged files ---------------------------------------------------------------


def test_missing_file(path: Path) -> None:
    for call in (
        lambda: open_keystore(path, passphrase=PASS),
        lambda: read_public_did(path),
        lambda: unlock_from(path, environ={"EMPRESSA_PASSPHRASE": PASS}, prompt=None),
    ):
        with pytest.raises(KeystoreError, match="no keystore at") as info:
            call()
        assert str(path) in str(info.value)


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="cannot read keystore"):
        read_public_did(tmp_path)  # a directory


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage", b'{"format": "empressa-keys'])
def test_corrupt_json(path: Path, pass_keys: Keys, content: bytes) -> None:
    path.write_bytes(content)
    with pytest.raises(KeystoreError, match="is not valid JSON") as info:
        open_keystore(path, passphrase=PASS)
    assert str(path) in str(info.value)
    with pytest.raises(KeystoreError, match="is not valid JSON"):
        read_public_did(path)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_unknown_version(path: Path, pass_keys: Keys, version: Any) -> None:
    edit(path, lambda d: d.update(version=version))
    with pytest.raises(KeystoreError, match="unsupported version") as info:
        open_keystore(path, passphrase=PASS)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.clear(),
        lambda d: d.update(format="something-else"),
        lambda d: d.pop("secrets"),
        lambda d: d["secrets"].pop("peer"),
        lambda d: d["secrets"]["author"].update(ciphertext="not base64!"),
        lambda d: d["secrets"]["author"].pop("data_key"),
        lambda d: d.pop("check"),
        lambda d: d.update(did="did:key:zNotAKey"),
        lambda d: d["kek"].update(kind="rot13"),
        lambda d: d["kek"].update(kdf="scrypt"),
        lambda d: d["kek"].update(opslimit=10**9),  # would burn CPU for ever
        lambda d: d["kek"].update(memlimit=2**40),  # would allocate a terabyte
        lambda d: d["kek"].update(salt=base64.b64encode(bytes(8)).decode()),
    ],
)
def test_malformed_file(path: Path, pass_keys: Keys, change: Any) -> None:
    edit(path, change)
    with pytest.raises(KeystoreError, match="is malformed") as info:
        open_keystore(path, passphrase=PASS)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_non_object_json(path: Path, pass_keys: Keys) -> None:
    path.write_text("[1, 2, 3]")
    with pytest.raises(KeystoreError, match="malformed"):
        read_public_did(path)


def other_did() -> str:
    return Signer(os.urandom(32)).public.did


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["secrets"]["author"].update(ciphertext=flip_b64(d["secrets"]["author"]["ciphertext"])),
        lambda d: d["secrets"]["peer"].update(ciphertext=flip_b64(d["secrets"]["peer"]["ciphertext"])),
        lambda d: d["secrets"]["author"].update(data_key=flip_b64(d["secrets"]["author"]["data_key"])),
        lambda d: d["secrets"]["peer"].update(data_key=flip_b64(d["secrets"]["peer"]["data_key"], 0)),
        # Swap the two secrets: each still decrypts, but the file no longer matches its check.
        lambda d: d.update(secrets={"author": d["secrets"]["peer"], "peer": d["secrets"]["author"]}),
        # Claim another author in clear.
        lambda d: d.update(did=other_did()),
    ],
)
def test_tampered_file(path: Path, pass_keys: Keys, change: Any) -> None:
    edit(path, change)
    with pytest.raises(KeystoreError, match="is corrupt or was tampered with") as info:
        open_keystore(path, passphrase=PASS)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None


def test_tampered_kek_file(path: Path) -> None:
    kek = os.urandom(32)
    create_keystore(path, kek=kek)
    edit(
        path,
        lambda d: d["secrets"]["peer"].update(ciphertext=flip_b64(d["secrets"]["peer"]["ciphertext"])),
    )
    with pytest.raises(KeystoreError, match="tampered"):
        open_keystore(path, kek=kek)


def test_tampering_is_caught_even_when_the_check_is_recomputed_without_the_kek(
    path: Path, pass_keys: Keys
) -> None:
    # An attacker without the KEK cannot forge the check: replacing it with a
    # check sealed under another key reads as a wrong passphrase, never as success.
    import nacl.secret

    def forge(d: dict[str, Any]) -> None:
        d["did"] = other_did()
        body = {k: v for k, v in d.items() if k != "check"}
        box = nacl.secret.SecretBox(os.urandom(32))
        d["check"] = base64.b64encode(box.encrypt(ks._CHECK_LABEL + ks._digest(body))).decode()

    edit(path, forge)
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        open_keystore(path, passphrase=PASS)


def test_new_keystore_secret_from_the_environment_else_typed_twice() -> None:
    kek = "cd" * 32
    assert ks.new_keystore_secret({"EMPRESSA_KEK": kek}, None, missing="x") == (None, bytes.fromhex(kek))
    assert ks.new_keystore_secret({"EMPRESSA_PASSPHRASE": "pw"}, None, missing="x") == ("pw", None)
    with pytest.raises(KeystoreError, match=r"^nothing here$"):
        ks.new_keystore_secret({}, None, missing="nothing here")
    asked: list[str] = []
    answers = iter(["secret", "secret"])

    def prompt(text: str) -> str:
        asked.append(text)
        return next(answers)

    assert ks.new_keystore_secret({}, prompt, missing="x", what="bridge keystore") == ("secret", None)
    assert asked == ["New bridge keystore passphrase: ", "Repeat passphrase: "]
    answers = iter(["one", "two"])
    with pytest.raises(KeystoreError, match="passphrases do not match"):
        ks.new_keystore_secret({}, prompt, missing="x")
