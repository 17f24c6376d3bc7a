"""User passwords and session tokens (backup passwords in transit: `common.transit`).

User passwords are stored as scrypt hashes (memory-hard) and checked in constant time. Session
tokens are stored under their digest only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

# scrypt for stored user passwords: 32 MiB and ~0.1 s per check.
PASSWORD_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


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


def _call_directly(function: Callable[..., bytes], *args: Any, **kwargs: Any) -> bytes:
    return function(*args, **kwargs)


# How the ~0.1 s of scrypt per login is run. A server with one event loop per process (the
# API's gevent worker) swaps in its thread pool, so a login does not stall every other request
# (hashlib.scrypt releases the GIL).
offload: Callable[..., bytes] = _call_directly


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return offload(hashlib.scrypt, password.encode(), salt=salt, n=n, r=r, p=p,
                   maxmem=256 * r * n + 2**20, dklen=32)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Sessions are stored under the token's digest: Redis never holds a usable token."""
    return hashlib.sha256(token.encode()).hexdigest()
