"""Alert targets, the events tasks leave when they end, deliveries and their log."""

from __future__ import annotations

import json
from typing import Any

import redis

from common.store.codec import PREFIX, once_per

CONFIG_KEY = f"{PREFIX}alerts:config"
EVENTS_KEY = f"{PREFIX}alerts:events"  # "<final state> <task id>", oldest first
LOG_KEY = f"{PREFIX}alerts:log"
LOG_LENGTH = 500
DELIVERY_TTL_SECONDS = 24 * 3600


class Alerts:
    redis: redis.Redis

    def get_alerts(self) -> dict[str, Any] | None:
        raw = self.redis.get(CONFIG_KEY)
        return json.loads(raw) if raw else None

    def put_alerts(self, config: dict[str, Any]) -> None:
        """Targets, or none: without any, ending tasks leave no events."""
        if config.get("targets"):
            self.redis.set(CONFIG_KEY, json.dumps(config))
        else:
            self.redis.delete(CONFIG_KEY, EVENTS_KEY)

    def take_alert_events(self, count: int = 100) -> list[tuple[str, str]]:
        """Up to `count` waiting events, oldest first: (final state or event, task id)."""
        taken = self.redis.lpop(EVENTS_KEY, count) or []
        return [tuple(item.split(" ", 1)) for item in taken]

    def add_alert_event(self, event: str, subject: str) -> None:
        self.redis.rpush(EVENTS_KEY, f"{event} {subject}")

    def overdue_check_due(self, every_seconds: int) -> bool:
        """True at most once per `every_seconds` across all workers: the overdue check reads
        the backup listing, which the one-second tick must not do each time."""
        return once_per(self.redis, f"{PREFIX}alerts:overdue-checked", every_seconds)

    def note_overdue(self, episode: str) -> bool:
        """True the first time `episode` (what the last scheduled backup was) is noted: an
        overdue schedule alerts once, until a new scheduled backup ends the episode."""
        return self.redis.set(f"{PREFIX}alerts:overdue", episode, get=True) != episode

    def task_document(self, task_id: str) -> dict[str, Any] | None:
        document = self.redis.hget(self.task_key(task_id), "document")
        return json.loads(document) if document else None

    def keep_delivery(self, delivery_id: str, payload: str) -> None:
        self.redis.set(f"{PREFIX}alerts:delivery:{delivery_id}", payload,
                       ex=DELIVERY_TTL_SECONDS)

    def delivery(self, delivery_id: str) -> str | None:
        return self.redis.get(f"{PREFIX}alerts:delivery:{delivery_id}")

    def log_delivery(self, entry: dict[str, Any]) -> None:
        with self.redis.pipeline() as pipe:
            pipe.lpush(LOG_KEY, json.dumps(entry))
            pipe.ltrim(LOG_KEY, 0, LOG_LENGTH - 1)
            pipe.execute()

    def delivery_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest delivery attempts, newest first."""
        return [json.loads(item) for item in self.redis.lrange(LOG_KEY, 0, limit - 1)]
