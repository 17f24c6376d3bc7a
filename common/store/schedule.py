"""The schedule of backups, the schedule of integrity checks, and the slots that make each run
start once."""

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
        return self._get_config("schedule")

    def put_schedule(self, config: dict[str, Any]) -> None:
        """Store the schedule; its clock restarts, so the first run is one period away."""
        self._put_config("schedule", config, "schedule:last", "schedule:since")

    def _get_config(self, name: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"{PREFIX}config:{name}")
        return json.loads(raw) if raw else None

    def _put_config(self, name: str, config: dict[str, Any], *clocks: str) -> None:
        """Store a configuration and, in the same step, start its clocks now."""
        with self.redis.pipeline() as pipe:
            pipe.set(f"{PREFIX}config:{name}", json.dumps(config))
            for clock in clocks:
                pipe.set(f"{PREFIX}{clock}", now_ms())
            pipe.execute()

    def schedule_since(self) -> int | None:
        """When the schedule was last set (ms): what overdue counts from before any backup."""
        since = self.redis.get(f"{PREFIX}schedule:since")
        return int(since) if since else None

    def schedule_last_run(self) -> str:
        return self.redis.get(f"{PREFIX}schedule:last") or ""

    def take_schedule_slot(self, seen_last: str, new_last: int) -> bool:
        return bool(self._take_slot(keys=[f"{PREFIX}schedule:last"], args=[seen_last, new_last]))

    # --- integrity checks: a schedule for verify ---------------------------------------------

    def get_check_schedule(self) -> dict[str, Any] | None:
        return self._get_config("checks")

    def put_check_schedule(self, config: dict[str, Any]) -> None:
        """Store the check schedule; the first run is one period away."""
        self._put_config("checks", config, "checks:last")

    def check_last_run(self) -> str:
        return self.redis.get(f"{PREFIX}checks:last") or ""

    def take_check_slot(self, seen_last: str, new_last: int) -> bool:
        return bool(self._take_slot(keys=[f"{PREFIX}checks:last"], args=[seen_last, new_last]))
