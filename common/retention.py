"""Which scheduled backups a retention policy keeps: the `restic forget --keep-*` rules.

Backups are taken newest first. `keepLast N` keeps the N newest. Each calendar rule
(`keepHourly`, `keepDaily`, `keepWeekly`, `keepMonthly`, `keepYearly`) keeps the newest backup
of each of its N most recent periods that hold a backup; periods are counted in the policy's
time zone, weeks as ISO weeks. A backup kept by any rule is kept, with every rule that kept it
as its reasons. Only scheduled backups are subject to the rules: manual and imported ones are
always kept, and so is one under object lock until its date. The newest scheduled backup is
always kept, so the only successful backup is never deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.clock import now_ms

if TYPE_CHECKING:
    from common.backupfile.io.storage import BackupStorage

# Rule name in the schedule, the period it counts, how a period is named in a reason.
CALENDAR_RULES: tuple[tuple[str, str, Callable[[datetime], str]], ...] = (
    ("keepHourly", "hourly", lambda t: t.strftime("%Y-%m-%dT%H")),
    ("keepDaily", "daily", lambda t: t.strftime("%Y-%m-%d")),
    ("keepWeekly", "weekly", lambda t: "{}-W{:02d}".format(*t.isocalendar())),
    ("keepMonthly", "monthly", lambda t: t.strftime("%Y-%m")),
    ("keepYearly", "yearly", lambda t: t.strftime("%Y")),
)
RULE_NAMES = ("keepLast", *(name for name, _, _ in CALENDAR_RULES))
DEFAULT_KEEP_LAST = 7


def time_zone(name: str) -> ZoneInfo:
    """The zone periods are counted in; ValueError for a name the system does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class Policy:
    counts: Mapping[str, int]  # rule name -> how many; absent or 0: the rule keeps none
    zone: str = "UTC"

    @classmethod
    def from_schedule(cls, config: Mapping[str, Any]) -> Policy:
        """The schedule's rules. `keep`, the one rule before calendar rules, is keepLast;
        a schedule with no rule at all keeps the last DEFAULT_KEEP_LAST."""
        counts = {name: int(config[name]) for name in RULE_NAMES if config.get(name)}
        if not counts.get("keepLast") and config.get("keep"):
            counts["keepLast"] = int(config["keep"])
        return cls(counts or {"keepLast": DEFAULT_KEEP_LAST}, config.get("timeZone") or "UTC")


@dataclass(frozen=True)
class Decision:
    backup: Mapping[str, Any]
    reasons: tuple[str, ...]  # empty: deleted

    @property
    def keep(self) -> bool:
        return bool(self.reasons)

    def document(self) -> dict[str, Any]:
        return {"id": self.backup["id"], "generatedOn": int(self.backup["generatedOn"]),
                "kind": self.backup.get("kind") or "manual", "reasons": list(self.reasons)}


def decide(backups: list[Mapping[str, Any]], policy: Policy,
           locked: Callable[[Mapping[str, Any]], bool] = lambda _b: False) -> list[Decision]:
    """A decision for each backup, newest first. `locked` is asked only about backups the
    rules would delete."""
    newest_first = sorted(backups, key=lambda b: (int(b["generatedOn"]), b["id"]), reverse=True)
    scheduled = [b for b in newest_first if b.get("kind") == "scheduled"]
    reasons = _rule_reasons(scheduled, policy)
    if scheduled:
        reasons[scheduled[0]["id"]] = reasons.get(scheduled[0]["id"]) or ["newest scheduled"]
    return [Decision(b, _reasons(b, reasons, locked)) for b in newest_first]


def _reasons(backup: Mapping[str, Any], by_id: dict[str, list[str]],
             locked: Callable[[Mapping[str, Any]], bool]) -> tuple[str, ...]:
    if backup.get("kind") != "scheduled":
        return (f"{backup.get('kind') or 'manual'} backups are never deleted by retention",)
    if by_id.get(backup["id"]):
        return tuple(by_id[backup["id"]])
    return ("under object lock",) if locked(backup) else ()


def _rule_reasons(newest_first: list[Mapping[str, Any]], policy: Policy) -> dict[str, list[str]]:
    """restic's walk: for each rule, the first backup met in a period not seen yet is kept,
    until the rule's count is used up."""
    zone = time_zone(policy.zone)
    left = {name: policy.counts.get(name, 0) for name in RULE_NAMES}
    last_period: dict[str, str | None] = dict.fromkeys(RULE_NAMES)
    kept: dict[str, list[str]] = {}
    for position, backup in enumerate(newest_first, start=1):
        when = datetime.fromtimestamp(int(backup["generatedOn"]) / 1000, zone)
        why = kept.setdefault(backup["id"], [])
        if left["keepLast"] > 0:
            left["keepLast"] -= 1
            why.append(f"last {position}")
        for name, label, period_of in CALENDAR_RULES:
            period = period_of(when)
            if left[name] > 0 and period != last_period[name]:
                left[name] -= 1
                last_period[name] = period
                why.append(f"{label} {period}")
    return kept


def is_locked(storage: BackupStorage, backup: Mapping[str, Any]) -> bool:
    """Whether the store's object lock still holds the backup's file."""
    stored = storage.stat(backup["file"])
    return stored is not None and stored.locked_at(now_ms())
