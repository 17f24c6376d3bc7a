"""The schedule of backups and the slot that makes one run start once."""

from __future__ import annotations

import json
from typing import Any

import redis

from common.clock import now_ms
from common.store.codec import (
    PREFIX,
)


class ScheduleStore:
    """The schedule's configuration and its last run, taken with a compare-and-set."""

    redis: redis.Redis

    def get_schedule(self) -> dict[str, Any] | None:
        raw = self.redis.get(f"{PREFIX}config:schedule")
        return json.loads(raw) if raw else None

    def put_schedule(self, config: dict[str, Any]) -> None:
        """Store the schedule; its clock restarts, so the first run is one period away."""
        with self.redis.pipeline() as pipe:
            pipe.set(f"{PREFIX}config:schedule", json.dumps(config))
            pipe.set(f"{PREFIX}schedule:last", now_ms())
            pipe.set(f"{PREFIX}schedule:since", now_ms())
            pipe.execute()

    def schedule_since(self) -> int | None:
        """When the schedule was last set (ms): what overdue counts from before any backup."""
        since = self.redis.get(f"{PREFIX}schedule:since")
        return int(since) if since else None

    def schedule_last_run(self) -> str:
        return self.redis.get(f"{PREFIX}schedule:last") or ""

    def take_schedule_slot(self, seen_last: str, new_last: int) -> bool:
        return bool(self._take_slot(keys=[f"{PREFIX}schedule:last"], args=[seen_last, new_last]))

