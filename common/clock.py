"""The service's one clock for stored times: milliseconds since the epoch, as vCDA gives them."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
