"""Passwords in transit and at rest.

A backup password travels from the API to a worker through Redis, which must never hold it in
clear: it is sealed with ChaCha20-Poly1305 under a transit key that Redis does not hold (set by
H4_TRANSIT_KEY[_FILE], or generated once into the data folder), bound to the task id so a sealed
password cannot be replayed onto another task.

User passwords are stored as scrypt hashes (memory-hard) and checked in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_BYTES = 32
NONCE_BYTES = 12
# scrypt for stored user passwords: 32 MiB and ~0.1 s per check.
PASSWORD_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


def decode_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except ValueError:
        raise ValueError("the transit key must be base64 of 32 bytes") from None
    if len(key) != KEY_BYTES:
        raise ValueError("the transit key must be base64 of 32 bytes")
    return key


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def load_or_create_key_file(path: Path) -> bytes:
    """Read the transit key from `path`, creating it (mode 0600) when absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return decode_key(path.read_text())
    with os.fdopen(fd, "w") as handle:
        handle.write(encode_key(secrets.token_bytes(KEY_BYTES)) + "\n")
    return decode_key(path.read_text())


class TransitSealer:
    """Seals a password for one task so only a holder of the transit key can open it."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def seal(self, password: str, task_id: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, password.encode(), task_id.encode())
        return base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, task_id: str) -> str:
        raw = base64.b64decode(sealed)
        try:
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], task_id.encode())
        except InvalidTag:
            raise ValueError("sealed password does not open with this transit key") from None
        return plain.decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, **PASSWORD_SCRYPT)
    params = PASSWORD_SCRYPT
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **params, salt=salt.hex(), digest=digest.hex()
    )


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        candidate = _scrypt(password, bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(candidate, bytes.fromhex(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * r * n + 2**20, dklen=32)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Sessions are stored under the token's digest: Redis never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()
