"""Writes to Redis that must not be lost ride out a restart or failover, within limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

log = logging.getLogger("h4backup.worker")

T = TypeVar("T")
# How long a worker keeps trying to reach Redis for a write that must not be lost (claiming
# a task, recording its end) before it gives the task up to the reaper.
REDIS_PATIENCE_SECONDS = 180


def patiently(write: Callable[[], T], patience: float = REDIS_PATIENCE_SECONDS) -> T:
    """Run a Redis write, retrying through an outage (a restart, a failover) with backoff."""
    deadline, pause = time.monotonic() + patience, 0.2
    while True:
        try:
            return write()
        except redis.RedisError as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("Redis unavailable (%s); retrying in %.1f s", type(exc).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
