"""When a scheduled backup is due: an interval in seconds, or a cron expression (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from celery.schedules import crontab


def parse_cron(expression: str) -> crontab:
    """`minute hour day-of-month month day-of-week`; ValueError when malformed."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError("a cron schedule has five fields: minute hour day month weekday")
    minute, hour, day, month, weekday = fields
    return crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month,
                   day_of_week=weekday)


def is_due(config: dict, last_ms: int, now: int) -> bool:
    if config.get("intervalSeconds"):
        return now - last_ms >= int(config["intervalSeconds"]) * 1000
    if config.get("cron"):
        last = datetime.fromtimestamp(last_ms / 1000, UTC)
        when = parse_cron(config["cron"])
        when.nowfun = lambda: datetime.fromtimestamp(now / 1000, UTC)
        return when.remaining_estimate(last).total_seconds() <= 0
    return False
