"""Scheduled backups and their retention.

Celery beat sends a tick every second; the tick reads the schedule from the store and starts a
backup when one is due. The slot is taken with a compare-and-set, so two ticks running at once
start one backup, not two. Scheduled backups are encrypted to the configured age public keys,
so the service never stores a password for them. After a scheduled backup succeeds, the
scheduled backups that no keep rule keeps are deleted (`common.retention`); manual and
imported backups are never touched.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from common.backupfile.format.age import read_identity_file
from common.backupfile.io.storage import BackupStorage
from common.clock import now_ms
from common.errors import BackupQuotaExceeded, H4Error, TooManyTasks
from common.kinds import VERIFY
from common.retention import Policy, decide, is_locked
from common.schedules import is_due
from common.starting import TaskStarter
from common.states import TaskState
from common.store import Store
from common.tasks import SCHEDULE_TICK, TaskRow, new_backup_task, new_task

log = logging.getLogger("h4backup.worker")

SCHEDULER_USER = "scheduler"
# Where Celery logs, at INFO, each task beat sends and each task a worker receives and ends.
CELERY_TASK_LOGGERS = ("celery.beat", "celery.worker.strategy", "celery.app.trace")


class TickAtDebug(logging.Filter):
    """Celery's INFO lines about the tick become DEBUG lines: at one tick a second they would
    be three INFO lines a second (about 260,000 a day) that say nothing happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _about_tick(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _about_tick(record: logging.LogRecord) -> bool:
    args = record.args
    values = args.values() if isinstance(args, Mapping) else args or ()
    return SCHEDULE_TICK in values


def log_ticks_at_debug() -> None:
    """Install TickAtDebug on Celery's task loggers, once; worker and beat call it at start."""
    for name in CELERY_TASK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TickAtDebug) for f in logger.filters):
            logger.addFilter(TickAtDebug())


def tick(starter: TaskStarter, now: int | None = None) -> str | None:
    """Start the scheduled backup if one is due; returns its task id."""
    store = starter.store
    config = store.get_schedule()
    if not config or not config.get("enabled"):
        return None
    now = now or now_ms()
    seen = store.schedule_last_run()
    if not is_due(config, int(seen or 0), now) or not store.take_schedule_slot(seen, now):
        return None
    return _start(starter, config)


def check_tick(starter: TaskStarter, identity_file: Path | None,
               now: int | None = None) -> list[str]:
    """Start the scheduled integrity check if one is due: a verify task for each listed
    backup, with the configured identity when the check is a full one. Returns their ids."""
    store = starter.store
    config = store.get_check_schedule()
    if not config or not config.get("enabled"):
        return []
    now = now or now_ms()
    seen = store.check_last_run()
    if not is_due(config, int(seen or 0), now) or not store.take_check_slot(seen, now):
        return []
    secret = _check_secret(config, identity_file)
    started = []
    for backup in store.list_backups():
        row = replace(new_task(SCHEDULER_USER, VERIFY.name, "backup", backup["id"],
                               backup_id=backup["id"]), kind="scheduled")
        starter.follow_up(row, secret if backup.get("encrypted") else None)
        started.append(row.id)
    log.info("scheduled check started %d verify tasks (%s)", len(started),
             "full" if secret else "SHA-512 only")
    return started


def _check_secret(config: dict, identity_file: Path | None) -> dict[str, str]:
    """The identity a full check opens backups with, from its file on this host; none (a
    SHA-512-only check, logged) when it cannot be read."""
    if not config.get("full"):
        return {}
    try:
        return {"identity": read_identity_file(identity_file)} if identity_file else {}
    except (OSError, ValueError) as exc:
        log.error("scheduled check runs on SHA-512 only: H4_CHECK_IDENTITY_FILE: %s", exc)
        return {}


def _start(starter: TaskStarter, config: dict) -> str | None:
    """The row and its message in one step, as the API starts a backup: a beat killed
    half-way cannot leave a RUNNING row that no worker will run."""
    backup_id = str(uuid.uuid4())
    recipients = list(config.get("recipients") or [])
    row = new_backup_task(SCHEDULER_USER, backup_id, encrypted=bool(recipients),
                          recipients=recipients, kind="scheduled")
    try:
        starter.backup(row, backup_id)
    except (BackupQuotaExceeded, TooManyTasks) as refusal:
        log.warning("scheduled backup not started: %s", refusal.msg)
        _record_refusal(starter, row, refusal)
        return None
    return row.id


def _record_refusal(starter: TaskStarter, row: TaskRow, refusal: H4Error) -> None:
    """A refused scheduled run stays visible as a FAILED task, not only as a log line. It is
    written FAILED in one step: a beat killed half-way cannot leave a RUNNING row that holds
    one of the scheduler's task slots for ever."""
    now = now_ms()
    starter.store.record_finished_task(replace(
        row, state=TaskState.FAILED, end_time=now, last_updated=now,
        error=refusal.to_api_error()))


def prune(store: Store, storage: BackupStorage, policy: Policy) -> list[str]:
    """Delete the scheduled backups no keep rule keeps; returns the ids deleted. One under
    object lock stays, listed, until its retention ends: a later run deletes it."""
    decisions = decide(store.list_backups(), policy, lambda b: is_locked(storage, b))
    deleted = []
    for decision in decisions:
        if decision.keep:
            continue
        row = store.unlist_unless_held(decision.backup["id"])
        if row is not None:
            storage.delete_backup(row["id"], row["file"])
            deleted.append(row["id"])
            log.info("retention deleted scheduled backup %s", row["id"])
    return deleted


def after_success(store: Store, storage: BackupStorage, task: TaskRow) -> None:
    """Retention runs only once a newer scheduled backup is safely listed."""
    if task.kind == "scheduled":
        prune(store, storage, Policy.from_schedule(store.get_schedule() or {}))
