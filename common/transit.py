"""Passwords on their way from the API to a worker, and the keys that seal them.

A backup password must never rest anywhere in a form that a key on the same disk opens. So:

- it is sealed with ChaCha20-Poly1305 under a transit key that Redis does not hold, bound to
  the task id so a sealed value cannot be replayed onto another task;
- the store keeps the sealed value in Redis memory only: it is written without propagation to
  the AOF or replicas, and deleted when the task ends (see `common/store/scripts.py`);
- the transit keys form a keyring: the first key seals, every key opens. Rotating puts a new key
  first and keeps the previous one, so tasks sealed a moment before still open; a key file is
  read again when it changes, so a rotation needs no restart.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from common.privatefiles import create_once
from common.privatefiles import replace as private_replace

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 4
SEALED_FORMAT = b"\x01"  # format byte, key id, nonce, ciphertext


def decode_key(text: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise ValueError("a transit key must be base64 of 32 bytes") from None
    if len(key) != KEY_BYTES:
        raise ValueError("a transit key must be base64 of 32 bytes")
    return key


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def parse_keyring(text: str) -> tuple[bytes, ...]:
    """Keys separated by commas or new lines, the sealing key first."""
    keys = tuple(decode_key(part) for part in text.replace(",", "\n").split() if part)
    if not keys:
        raise ValueError("no transit key is given")
    return keys


def key_id(key: bytes) -> bytes:
    """Names a key inside sealed values without revealing anything of it."""
    return hashlib.sha256(b"h4backup transit key id\0" + key).digest()[:KEY_ID_BYTES]


class KeySource(Protocol):
    def current(self) -> tuple[bytes, ...]: ...


@dataclass(frozen=True)
class StaticKeys:
    """Keys given in the environment (H4_TRANSIT_KEY): rotated by a rolling restart."""

    ring: tuple[bytes, ...]

    def current(self) -> tuple[bytes, ...]:
        return self.ring


class KeyFile:
    """A keyring file, read again whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._ring: tuple[bytes, ...] = ()

    def current(self) -> tuple[bytes, ...]:
        stat = self.path.stat()
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if version != self._seen:
            self._ring, self._seen = parse_keyring(self.path.read_text()), version
        return self._ring


def create_key_file(path: Path) -> None:
    """A keyring file with one new key, unless the file exists."""
    create_once(path, encode_key(secrets.token_bytes(KEY_BYTES)) + "\n")


def rotate_key_file(path: Path) -> tuple[str, int]:
    """Put a new sealing key first, keep the one before it, drop older ones.

    Returns the new key's id (hex) and how many keys were dropped. Passwords sealed under a
    dropped key no longer open anywhere, including in any copy of Redis's files.
    """
    ring = parse_keyring(path.read_text())
    new_key = secrets.token_bytes(KEY_BYTES)
    private_replace(path, "".join(encode_key(k) + "\n" for k in (new_key, ring[0])))
    return key_id(new_key).hex(), len(ring) - 1


class TransitSealer:
    """Seals a password for one task so only a holder of a transit key can open it."""

    def __init__(self, source: KeySource) -> None:
        self._source = source

    def seal(self, plaintext: str, task_id: str) -> str:
        key = self._source.current()[0]
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = ChaCha20Poly1305(key).encrypt(nonce, plaintext.encode(), task_id.encode())
        return base64.b64encode(SEALED_FORMAT + key_id(key) + nonce + sealed).decode()

    def open(self, sealed: str, task_id: str) -> str:
        raw = base64.b64decode(sealed)
        if raw[:1] != SEALED_FORMAT:
            raise ValueError("the sealed value is not in a known format")
        key = self._key_named(raw[1:1 + KEY_ID_BYTES])
        body = raw[1 + KEY_ID_BYTES:]
        try:
            plain = ChaCha20Poly1305(key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:],
                                                  task_id.encode())
        except InvalidTag:
            raise ValueError("the sealed value does not open with its transit key") from None
        return plain.decode()

    def _key_named(self, wanted: bytes) -> bytes:
        for key in self._source.current():
            if key_id(key) == wanted:
                return key
        raise ValueError("the value was sealed under a transit key this process does not "
                         "hold (rotated away, or API and workers use different keys)")
