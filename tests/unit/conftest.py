"""Unit tests only: user passwords hashed with a cheap scrypt cost.

Every `app` fixture creates the administrator (one scrypt hash) and nearly every test logs in
(one more): at the production cost (n=2**15, ~0.1 s each) that was most of the unit suite's
time. Hashes carry their own parameters, so hashing and checking stay the same code paths, with
the same algorithm, salts and constant-time comparison; only the work per call is smaller. The
integration, fault and security suites run the real processes at the real cost.
"""

from __future__ import annotations

import pytest

from common import secrecy

UNIT_PASSWORD_SCRYPT = {"n": 2**10, "r": 8, "p": 1}


@pytest.fixture(autouse=True, scope="session")
def cheap_password_hashes():
    production = secrecy.PASSWORD_SCRYPT
    secrecy.PASSWORD_SCRYPT = UNIT_PASSWORD_SCRYPT
    yield
    secrecy.PASSWORD_SCRYPT = production
