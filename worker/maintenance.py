"""Housekeeping run by Celery beat: find tasks whose worker died, and sweep stale files.

A task that was claimed (attempts > 0) but holds no lease any more lost its worker: the lease
is renewed every few seconds while a worker runs it. Such a task is sent again, or, once it has
used up its attempts, ends FAILED `WorkerLost`. Queued tasks (never claimed) are left alone:
their message is still in the broker.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.backupfile.io.folder import remove_orphan_temporaries
from common.backupfile.io.storage import BackupStorage
from common.errors import WorkerLost
from common.kinds import BACKUP, RESTORE, kind_of
from common.states import TaskState
from common.store import Store

log = logging.getLogger("h4backup.worker")

# A temporary file untouched this long belongs to no living writer.
ORPHAN_AGE_SECONDS = 3600


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def reap(store: Store, requeue: Callable[[str, str], None], max_attempts: int,
         storage: BackupStorage) -> ReapReport:
    report = ReapReport()
    for task_id in store.running_task_ids():
        task = store.get_task(task_id)
        if not _lost(store, task):
            continue
        if task["attempts"] >= max_attempts:
            _give_up(store, task, storage, report)
        elif store.mark_requeued(task_id, task["attempts"]):
            log.warning("task %s lost its worker (attempt %d); sending it again",
                        task_id, task["attempts"])
            requeue(task_id, task.get("type") or BACKUP.name)
            report.requeued.append(task_id)
    return report


def _lost(store: Store, task: dict | None) -> bool:
    if task is None or task["state"] != TaskState.RUNNING:
        return False
    return task.get("attempts", 0) > 0 and not store.has_lease(task["id"])


def _give_up(store: Store, task: dict, storage: BackupStorage, report: ReapReport) -> None:
    log.error("task %s lost its worker %d times; giving up", task["id"], task["attempts"])
    if store.fail(task["id"], WorkerLost().to_api_error()):
        report.failed.append(task["id"])
    kind = kind_of(task)
    if kind and kind.stores_backup and task.get("backupId"):
        # The task is FAILED now, so its backup will never be listed: what its attempts left
        # (unfinished writes, a file stored but never listed) goes.
        storage.remove_leftovers(task["backupId"])


def sweep(store: Store, storage: BackupStorage, restore_dir: Path) -> None:
    storage.remove_orphans(ORPHAN_AGE_SECONDS)
    if restore_dir.is_dir():
        remove_orphan_temporaries(restore_dir, ORPHAN_AGE_SECONDS)
        remove_orphan_stagings(restore_dir, _restoring(store))


def _restoring(store: Store) -> set[str]:
    """Backups that a living worker is restoring right now."""
    tasks = (store.get_task(task_id) for task_id in store.running_task_ids())
    return {t["backupId"] for t in tasks
            if t and t.get("type") == RESTORE.name and store.has_lease(t["id"])}


def remove_orphan_stagings(restore_dir: Path, restoring: set[str]) -> list[str]:
    """Staging folders (`.<backup id>-<time>.<random>.staging`) whose restore died."""
    removed = []
    for staging in restore_dir.glob(".*.staging"):
        if staging.is_dir() and not any(staging.name.startswith(f".{b}-") for b in restoring):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging.name)
    return removed
