"""The node's keystore: the author key, the libp2p peer key and the EVM account, envelope-encrypted.

``DATA_DIR/keystore.json`` holds two secrets, the author's Ed25519 seed and the
peer identity's Ed25519 seed, and optionally a third, ``evm``: the creator's EVM
account, a secp256k1 private key (32 random bytes in 1 … n-1, what eth_account
takes), created on first use by :func:`ensure_evm_key` (``empressa node
evm-account``, ``node register``): the file is then rewritten atomically, under
a lock, with the new secret sealed like the others and a new check value that
covers it. Keystores written before it existed open as they are. Each is sealed with its own random 32-byte data
key (XSalsa20-Poly1305, ``nacl.secret.SecretBox``); each data key is sealed with
a key-encryption key (KEK). The KEK is either derived from a passphrase with
Argon2id (``nacl.pwhash.argon2id``; salt and limits are stored in the file) or
given directly as ``EMPRESSA_KEK`` (64 hex characters or standard base64 of 32
bytes). The file records which kind of KEK sealed it.

File layout (version 1; every binary value is standard base64, sealed values
are ``nonce || ciphertext`` as ``SecretBox.encrypt`` returns them)::

    {
      "format": "empressa-keystore",
      "version": 1,
      "did": "did:key:z6Mk…",              # author's public did, in clear
      "kek": {"kind": "passphrase", "kdf": "argon2id",
              "salt": "…", "opslimit": 2, "memlimit": 67108864}
           | {"kind": "kek"},
      "secrets": {"author": {"data_key": "…", "ciphertext": "…"},
                  "peer":   {"data_key": "…", "ciphertext": "…"},
                  "evm":    {"data_key": "…", "ciphertext": "…"}},   # optional
      "check": "…"                          # SecretBox(KEK) of a digest of all the above
    }

The check value tells a wrong passphrase or KEK (it does not decrypt) apart from
a file that was edited after it was written (it decrypts, but the digest of the
other fields differs). Raw keys never touch disk unencrypted and never appear in
exceptions, ``repr`` or logs.

Errors, all :class:`~node.errors.KeystoreError` with a one-line message naming the file::

    KeystoreError
    ├── no keystore at PATH                    missing file
    ├── cannot read keystore PATH              permissions, a directory, I/O error
    ├── keystore PATH is not valid JSON        corrupt file
    ├── keystore PATH has unsupported version  written by a newer Empressa
    ├── keystore PATH is malformed: …          a field is missing or has the wrong type
    ├── keystore PATH is corrupt or was tampered with
    ├── wrong passphrase for keystore PATH     (or: wrong EMPRESSA_KEK for keystore PATH)
    ├── keystore PATH was created with …       passphrase given for a KEK keystore, or vice versa
    ├── keystore is locked: …                  no passphrase in the environment and no prompt
    ├── a keystore already exists at PATH      create refuses to overwrite
    ├── cannot write / cannot lock keystore PATH  adding the EVM account (rewrite, PATH.lock)
    └── EMPRESSA_KEK must be …                 malformed KEK text (its value is never echoed)

A wrong Argon2 salt or limit (someone edited them) is reported as a wrong
passphrase: the derived KEK differs either way, and nothing can tell the two apart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from protocol import Signer, parse_did

from .errors import KeystoreError
from .paths import KEYSTORE_FILE

__all__ = [
    "KEYSTORE_FILE",
    "PASSPHRASE_PROMPT",
    "KdfStrength",
    "Keys",
    "create_keystore",
    "ensure_evm_key",
    "kek_from_env",
    "new_keystore_secret",
    "open_keystore",
    "parse_kek",
    "read_public_did",
    "unlock_from",
    "unlock_with_evm_from",
]

log = logging.getLogger(__name__)

PASSPHRASE_PROMPT = "Keystore passphrase: "
ENV_PASSPHRASE = "EMPRESSA_PASSPHRASE"
ENV_KEK = "EMPRESSA_KEK"

KdfStrength = Literal["min", "interactive", "moderate", "sensitive"]

_FORMAT = "empressa-keystore"
_VERSION = 1
_KEY_BYTES = nacl.secret.SecretBox.KEY_SIZE  # 32
_SEED_BYTES = 32
_CHECK_LABEL = b"empressa-keystore-check-v1\x00"
_SECRET_NAMES = ("author", "peer")  # always there
_OPTIONAL_SECRETS = ("evm",)  # added on first use
# secp256k1's group order: an EVM private key is an integer in 1 … n-1.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_KDF_LIMITS: dict[str, tuple[int, int]] = {
    "min": (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN),
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    "sensitive": (argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE),
}
# Limits read from a file are bounded so an edited file cannot make us burn
# unbounded time or memory before the check value fails.
_OPS_RANGE = (argon2id.OPSLIMIT_MIN, argon2id.OPSLIMIT_SENSITIVE)
_MEM_RANGE = (argon2id.MEMLIMIT_MIN, argon2id.MEMLIMIT_SENSITIVE)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Keys:
    """The unlocked secrets: the author's signer, the libp2p peer identity's seed and, once
    created, the EVM account's private key (``evm_key``; ``None`` before).

    ``repr`` shows only the author's public did; the seeds and the EVM key never appear.
    """

    author: Signer
    peer_seed: bytes = field(repr=False)
    evm_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if type(self.peer_seed) is not bytes or len(self.peer_seed) != _SEED_BYTES:
            raise ValueError("the peer seed is 32 bytes")
        if self.evm_key is not None and not _valid_evm_key(self.evm_key):
            raise ValueError("the EVM key is a 32-byte secp256k1 private key")

    @property
    def did(self) -> str:
        """The author's public did:key."""
        return self.author.public.did

    def __repr__(self) -> str:
        evm = "" if self.evm_key is None else ", evm_key=<hidden>"
        return f"Keys(author={self.did}, peer_seed=<hidden>{evm})"

    __str__ = __repr__


# --- public API ------------------------------------------------------------------


def create_keystore(
    path: Path,
    *,
    passphrase: str | None = None,
    kek: bytes | None = None,
    kdf_strength: KdfStrength = "interactive",
) -> Keys:
    """Generate fresh author and peer keys and seal them into a new keystore at ``path``.

    Args:
        path: the keystore file (normally ``DATA_DIR/keystore.json``); its
            directory is created (mode 0700) if missing.
        passphrase: derive the KEK from this with Argon2id.
        kek: use these 32 bytes as the KEK (from ``EMPRESSA_KEK``).
        kdf_strength: libsodium's Argon2id limits: ``"interactive"`` (default),
            ``"moderate"``, ``"sensitive"``, or ``"min"`` (tests only).

    Returns:
        The new keys, already unlocked.

    Raises:
        KeystoreError: a keystore already exists at ``path``, neither or both of
            ``passphrase`` and ``kek`` were given, the passphrase is empty, the
            KEK is not 32 bytes, or the file cannot be written.
    """
    path = Path(path)
    if (passphrase is None) == (kek is None):
        raise KeystoreError("creating a keystore needs exactly one of a passphrase or a KEK")
    if kdf_strength not in _KDF_LIMITS:
        raise KeystoreError(f"unknown kdf_strength {kdf_strength!r}; use one of {', '.join(_KDF_LIMITS)}")
    if path.exists():
        raise KeystoreError(f"a keystore already exists at {path}; refusing to overwrite it")

    if passphrase is not None:
        if not passphrase:
            raise KeystoreError("the keystore passphrase must not be empty")
        opslimit, memlimit = _KDF_LIMITS[kdf_strength]
        salt = nacl.utils.random(argon2id.SALTBYTES)
        kek_params: dict[str, Any] = {
            "kind": "passphrase",
            "kdf": "argon2id",
            "salt": _b64(salt),
            "opslimit": opslimit,
            "memlimit": memlimit,
        }
        key = _derive(passphrase, salt, opslimit, memlimit)
    else:
        assert kek is not None
        key = _check_kek_bytes(kek)
        kek_params = {"kind": "kek"}

    keys = Keys(author=Signer(nacl.utils.random(_SEED_BYTES)), peer_seed=nacl.utils.random(_SEED_BYTES))
    kek_box = nacl.secret.SecretBox(key)
    doc: dict[str, Any] = {
        "format": _FORMAT,
        "version": _VERSION,
        "did": keys.did,
        "kek": kek_params,
        "secrets": {
            "author": _seal_secret(kek_box, keys.author.seed),
            "peer": _seal_secret(kek_box, keys.peer_seed),
        },
    }
    doc["check"] = _b64(kek_box.encrypt(_CHECK_LABEL + _digest(doc)))
    _write_new(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
    log.info("keystore created path=%s did=%s kek=%s", path, keys.did, kek_params["kind"])
    return keys


def open_keystore(path: Path, *, passphrase: str | None = None, kek: bytes | None = None) -> Keys:
    """Unlock the keystore at ``path`` with a passphrase or a KEK (exactly one).

    Raises:
        KeystoreError: see the module docstring; never a crypto exception.
    """
    return _unlock(Path(path), passphrase=passphrase, kek=kek)[0]


def ensure_evm_key(
    path: Path, *, passphrase: str | None = None, kek: bytes | None = None
) -> tuple[Keys, bool]:
    """The keys with the EVM account, creating the account first if the keystore has none.

    A new key is 32 random bytes in secp256k1's range, sealed with its own data key under the
    same KEK; the file is rewritten atomically (a new file renamed over the old one, mode 0600)
    with a check value that covers it. An exclusive lock on ``PATH.lock`` makes the read and
    the rewrite one step, so two commands creating the account at once end with one account.

    Returns:
        ``(keys, created)``: ``keys.evm_key`` is set; ``created`` says whether it is new.

    Raises:
        KeystoreError: as :func:`open_keystore`, or the file cannot be rewritten.
    """
    path = Path(path)
    with _file_lock(path):
        keys, kek_box, doc = _unlock(path, passphrase=passphrase, kek=kek)
        if keys.evm_key is not None:
            return keys, False
        evm_key = _new_evm_key()
        clear = dict(doc["_clear"])
        clear.pop("check", None)
        clear["secrets"] = {**clear["secrets"], "evm": _seal_secret(kek_box, evm_key)}
        clear["check"] = _b64(kek_box.encrypt(_CHECK_LABEL + _digest(clear)))
        _write_replace(path, (json.dumps(clear, indent=2) + "\n").encode("utf-8"))
    log.info("keystore gained an EVM account path=%s did=%s", path, keys.did)
    return Keys(author=keys.author, peer_seed=keys.peer_seed, evm_key=evm_key), True


def read_public_did(path: Path) -> str:
    """The author's did:key from the keystore at ``path``, without unlocking it.

    Raises:
        KeystoreError: the file is missing, unreadable or malformed.
    """
    return str(_load(Path(path))["did"])


def parse_kek(text: str) -> bytes:
    """Decode ``EMPRESSA_KEK`` text: 64 hex characters, or standard base64 of exactly 32 bytes.

    Raises:
        KeystoreError: anything else. The value itself is never put in the message.
    """
    text = text.strip()
    if _HEX64.fullmatch(text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != _KEY_BYTES:
        raise KeystoreError(
            "EMPRESSA_KEK must be 32 bytes written as 64 hex characters or as standard base64 (44 characters)"
        )
    return raw


def kek_from_env(environ: Mapping[str, str]) -> tuple[str | None, bytes | None]:
    """``(passphrase, kek)`` from ``EMPRESSA_PASSPHRASE`` / ``EMPRESSA_KEK``.

    At most one of the two is not ``None``: if both variables are set the KEK
    wins. Empty variables count as unset.

    Raises:
        KeystoreError: ``EMPRESSA_KEK`` is set but malformed.
    """
    kek = _env_kek(environ)
    if kek is not None:
        return None, kek
    return _env_passphrase(environ), None


def new_keystore_secret(
    environ: Mapping[str, str],
    prompt: Callable[[str], str] | None,
    *,
    missing: str,
    what: str = "keystore",
) -> tuple[str | None, bytes | None]:
    """``(passphrase, kek)`` to seal a new keystore with: the environment's, else a passphrase typed twice.

    Args:
        environ: ``EMPRESSA_KEK`` / ``EMPRESSA_PASSPHRASE`` (see :func:`kek_from_env`).
        prompt: asks for a passphrase (``getpass.getpass``); ``None`` when nobody can answer.
        missing: the error's message when neither is set and there is no prompt.
        what: the prompt's name for the keystore (``"New {what} passphrase: "``).

    Raises:
        KeystoreError: nothing to seal with, the two passphrases differ, or a malformed KEK.
    """
    passphrase, kek = kek_from_env(environ)
    if passphrase is None and kek is None:
        if prompt is None:
            raise KeystoreError(missing)
        passphrase = prompt(f"New {what} passphrase: ")
        if passphrase != prompt("Repeat passphrase: "):
            raise KeystoreError("passphrases do not match")
    return passphrase, kek


def unlock_from(
    path: Path,
    *,
    environ: Mapping[str, str],
    prompt: Callable[[str], str] | None,
) -> Keys:
    """Unlock the keystore with what the environment offers, else by asking.

    The keystore records the kind of KEK that sealed it, and that kind is used:
    a KEK keystore needs ``EMPRESSA_KEK``; a passphrase keystore takes
    ``EMPRESSA_PASSPHRASE``, or else ``prompt("Keystore passphrase: ")``.
    (So with both variables set, each kind of keystore gets its own secret.)

    Args:
        path: the keystore file.
        environ: the process environment (``os.environ`` in the CLI).
        prompt: reads a passphrase without echo (``getpass.getpass``), or
            ``None`` when not interactive.

    Raises:
        KeystoreError: locked (nothing in the environment and no prompt, or an
            empty answer), wrong passphrase/KEK, or any file error.
    """
    path = Path(path)
    passphrase, kek = _secret_for(path, environ, prompt)
    return open_keystore(path, passphrase=passphrase, kek=kek)


def unlock_with_evm_from(
    path: Path,
    *,
    environ: Mapping[str, str],
    prompt: Callable[[str], str] | None,
) -> tuple[Keys, bool]:
    """:func:`unlock_from`, then :func:`ensure_evm_key`: ``(keys with evm_key, created)``."""
    path = Path(path)
    passphrase, kek = _secret_for(path, environ, prompt)
    return ensure_evm_key(path, passphrase=passphrase, kek=kek)


def _secret_for(
    path: Path, environ: Mapping[str, str], prompt: Callable[[str], str] | None
) -> tuple[str | None, bytes | None]:
    """``(passphrase, kek)`` that unlock the keystore at ``path`` (see :func:`unlock_from`)."""
    kind = _load(path)["kek"]["kind"]
    if kind == "kek":
        kek = _env_kek(environ)
        if kek is None:
            raise KeystoreError(
                f"keystore {path} is locked: it was created with EMPRESSA_KEK; set EMPRESSA_KEK"
            )
        return None, kek

    passphrase = _env_passphrase(environ)
    if passphrase is None:
        kek = _env_kek(environ)
        if kek is not None:
            return None, kek  # open_keystore reports the mismatch clearly
        if prompt is None:
            raise KeystoreError(
                "keystore is locked: set EMPRESSA_PASSPHRASE or EMPRESSA_KEK, or run interactively"
                f" (keystore {path})"
            )
        try:
            passphrase = prompt(PASSPHRASE_PROMPT)
        except EOFError:
            passphrase = ""
        if not passphrase:
            raise KeystoreError(f"keystore is locked: no passphrase given for keystore {path}")
    return passphrase, None


# --- internals -------------------------------------------------------------------


def _unlock(
    path: Path, *, passphrase: str | None, kek: bytes | None
) -> tuple[Keys, nacl.secret.SecretBox, dict[str, Any]]:
    """Open the keystore: its keys, the KEK's box (to seal a new secret) and the loaded file."""
    if (passphrase is None) == (kek is None):
        raise KeystoreError(f"unlocking keystore {path} needs exactly one of a passphrase or a KEK")
    doc = _load(path)
    kind = doc["kek"]["kind"]
    if passphrase is not None:
        if kind != "passphrase":
            raise KeystoreError(
                f"keystore {path} was created with EMPRESSA_KEK, not a passphrase; set EMPRESSA_KEK to unlock it"
            )
        p = doc["kek"]
        key = _derive(passphrase, p["salt"], p["opslimit"], p["memlimit"])
        wrong = f"wrong passphrase for keystore {path}"
    else:
        assert kek is not None
        if kind != "kek":
            raise KeystoreError(
                f"keystore {path} was created with a passphrase, not EMPRESSA_KEK; "
                "set EMPRESSA_PASSPHRASE or enter the passphrase"
            )
        key = _check_kek_bytes(kek)
        wrong = f"wrong EMPRESSA_KEK for keystore {path}"

    kek_box = nacl.secret.SecretBox(key)
    try:
        check = kek_box.decrypt(doc["check"])
    except nacl.exceptions.CryptoError:
        raise KeystoreError(wrong) from None
    tampered = KeystoreError(f"keystore {path} is corrupt or was tampered with")
    if check != _CHECK_LABEL + _digest(doc["_clear"]):
        raise tampered
    sealed = doc["secrets"]
    try:
        author_seed = _open_secret(kek_box, sealed["author"])
        peer_seed = _open_secret(kek_box, sealed["peer"])
        evm_key = _open_secret(kek_box, sealed["evm"]) if "evm" in sealed else None
    except nacl.exceptions.CryptoError:
        raise tampered from None
    if len(author_seed) != _SEED_BYTES or len(peer_seed) != _SEED_BYTES:
        raise tampered
    if evm_key is not None and not _valid_evm_key(evm_key):
        raise tampered
    keys = Keys(author=Signer(author_seed), peer_seed=peer_seed, evm_key=evm_key)
    if keys.did != doc["did"]:
        raise tampered
    return keys, kek_box, doc


def _valid_evm_key(key: bytes) -> bool:
    return type(key) is bytes and len(key) == _SEED_BYTES and 0 < int.from_bytes(key, "big") < _SECP256K1_N


def _new_evm_key() -> bytes:
    while True:  # out of range with probability ~2**-128
        key = nacl.utils.random(_SEED_BYTES)
        if _valid_evm_key(key):
            return key


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``PATH.lock`` for a read-modify-write of the keystore."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeystoreError(f"cannot lock keystore {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _env_passphrase(environ: Mapping[str, str]) -> str | None:
    return environ.get(ENV_PASSPHRASE) or None


def _env_kek(environ: Mapping[str, str]) -> bytes | None:
    text = environ.get(ENV_KEK, "")
    return parse_kek(text) if text.strip() else None


def _check_kek_bytes(kek: bytes) -> bytes:
    if not isinstance(kek, bytes) or len(kek) != _KEY_BYTES:
        raise KeystoreError("a KEK is exactly 32 bytes")
    return kek


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    # NFC so the same passphrase typed on different systems gives the same key.
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return bytes(argon2id.kdf(_KEY_BYTES, secret, salt, opslimit=opslimit, memlimit=memlimit))


def _seal_secret(kek_box: nacl.secret.SecretBox, secret: bytes) -> dict[str, str]:
    data_key = nacl.utils.random(_KEY_BYTES)
    return {
        "data_key": _b64(kek_box.encrypt(data_key)),
        "ciphertext": _b64(nacl.secret.SecretBox(data_key).encrypt(secret)),
    }


def _open_secret(kek_box: nacl.secret.SecretBox, sealed: Mapping[str, bytes]) -> bytes:
    data_key = kek_box.decrypt(sealed["data_key"])
    if len(data_key) != _KEY_BYTES:
        raise nacl.exceptions.CryptoError("bad data key length")
    return bytes(nacl.secret.SecretBox(data_key).decrypt(sealed["ciphertext"]))


def _digest(clear: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of every field except ``check``."""
    body = {k: v for k, v in clear.items() if k != "check"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` with mode 0600, atomically, never clobbering."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(path, data, replace=False)


def _write_replace(path: Path, data: bytes) -> None:
    """Replace the keystore at ``path`` with ``data`` atomically (a new 0600 file renamed over it)."""
    _write(path, data, replace=True)


def _write(path: Path, data: bytes, *, replace: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{nacl.utils.random(6).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                # A hard link is atomic and fails if the name exists, so a keystore
                # created concurrently is never overwritten.
                os.link(tmp, path)
            except FileExistsError:
                raise KeystoreError(
                    f"a keystore already exists at {path}; refusing to overwrite it"
                ) from None
            except OSError:
                # The filesystem has no hard links: check, then rename over.
                if path.exists():
                    raise KeystoreError(
                        f"a keystore already exists at {path}; refusing to overwrite it"
                    ) from None
                os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise KeystoreError(f"cannot write keystore {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _load(path: Path) -> dict[str, Any]:
    """Read and validate the file's structure; binary fields come back decoded.

    The returned dict has the file's fields with ``check``, ``data_key`` and
    ``ciphertext`` as bytes, ``kek.salt`` as bytes, and ``_clear``: the fields
    exactly as read, for the digest.
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise KeystoreError(f"no keystore at {path}; run `empressa node init` first") from None
    except OSError as exc:
        raise KeystoreError(f"cannot read keystore {path}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeystoreError(f"keystore {path} is not valid JSON") from None

    def malformed(what: str) -> KeystoreError:
        return KeystoreError(f"keystore {path} is malformed: {what}")

    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise malformed("not an Empressa keystore")
    version = doc.get("version")
    if version != _VERSION or type(version) is not int:
        raise KeystoreError(
            f"keystore {path} has unsupported version {version!r:.20}; this node reads version {_VERSION}"
        )

    def b64field(container: Any, key: str, where: str) -> bytes:
        value = container.get(key) if isinstance(container, dict) else None
        if not isinstance(value, str):
            raise malformed(f"{where} is missing")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise malformed(f"{where} is not base64") from None

    did = doc.get("did")
    if not isinstance(did, str):
        raise malformed("did is missing")
    try:
        parse_did(did)
    except Exception:
        raise malformed("did is not an Ed25519 did:key") from None

    kek = doc.get("kek")
    if not isinstance(kek, dict) or kek.get("kind") not in ("passphrase", "kek"):
        raise malformed("kek.kind must be 'passphrase' or 'kek'")
    kek_out: dict[str, Any] = {"kind": kek["kind"]}
    if kek["kind"] == "passphrase":
        if kek.get("kdf") != "argon2id":
            raise malformed("kek.kdf must be 'argon2id'")
        salt = b64field(kek, "salt", "kek.salt")
        if len(salt) != argon2id.SALTBYTES:
            raise malformed(f"kek.salt must be {argon2id.SALTBYTES} bytes")
        for name, (lo, hi) in (("opslimit", _OPS_RANGE), ("memlimit", _MEM_RANGE)):
            value = kek.get(name)
            if type(value) is not int or not lo <= value <= hi:
                raise malformed(f"kek.{name} must be an integer in {lo}..{hi}")
            kek_out[name] = value
        kek_out["salt"] = salt

    secrets = doc.get("secrets")
    if not isinstance(secrets, dict) or not set(_SECRET_NAMES) <= set(secrets) <= {
        *_SECRET_NAMES,
        *_OPTIONAL_SECRETS,
    }:
        raise malformed("secrets must hold 'author' and 'peer', and at most 'evm' besides")
    secrets_out = {
        name: {
            part: b64field(secrets[name], part, f"secrets.{name}.{part}")
            for part in ("data_key", "ciphertext")
        }
        for name in secrets
    }
    return {
        "did": did,
        "kek": kek_out,
        "secrets": secrets_out,
        "check": b64field(doc, "check", "check"),
        "_clear": doc,
    }
