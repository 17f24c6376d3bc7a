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
from common.celery_app import QUEUE
from common.clock import now_ms
from common.errors import H4Error, WorkerLost
from common.kinds import BACKUP, RESTORE, kind_of
from common.reconcile import reconcile
from common.states import TaskState
from common.store import Store
from common.tasks import TaskRow

log = logging.getLogger("h4backup.worker")

# A temporary file untouched this long belongs to no living writer.
ORPHAN_AGE_SECONDS = 3600


# A task no worker has claimed waits for its message. One whose message is nowhere, neither
# queued nor held by a worker, after this long was lost by the broker: it is sent again, once.
# A worker claims a task as soon as it receives its message, so a message received longer ago
# than this whose task is still unclaimed was lost too: its connection broke between kombu's
# pop and the delivery (a Redis restart), and the entry in `unacked` would otherwise wait for
# the 5 h visibility timeout. A copy it brings back later finds the task claimed or ended.
UNSENT_AGE_MS = 60_000


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def reap(store: Store, requeue: Callable[[str, str], None], max_attempts: int,
         storage: BackupStorage) -> ReapReport:
    report = ReapReport()
    for task_id in store.running_task_ids():
        task = store.get_task(task_id)
        if not _lost(store, task):
            continue
        if task.attempts >= max_attempts:
            _give_up(store, task, storage, report)
        elif store.mark_requeued(task_id, task.attempts):
            log.warning("task %s lost its worker (attempt %d); sending it again",
                        task_id, task.attempts)
            # Its writer is gone (no lease): what it left unfinished (a multipart upload
            # holding parts in the store, a temporary file) goes now, not when a worker
            # next takes the task, which may be much later.
            _remove_leftovers(storage, task)
            requeue(task_id, task.type or BACKUP.name)
            report.requeued.append(task_id)
    report.resent = _resend_lost_messages(store, requeue, now_ms())
    return report


def _resend_lost_messages(store: Store, requeue: Callable[[str, str], None],
                          now: int) -> list[str]:
    waiting = [task.id for task in map(store.get_task, store.running_task_ids())
               if _unclaimed_for_long(task, now)]
    if not waiting:
        return []
    with_messages = store.task_ids_with_messages((QUEUE,),
                                                 held_since=(now - UNSENT_AGE_MS) / 1000)
    resent = []
    for task_id in waiting:
        task = store.get_task(task_id)  # again: a worker may have claimed it meanwhile
        if (task_id in with_messages or not _unclaimed_for_long(task, now)
                or not store.mark_requeued(task_id, 0)):
            continue
        log.warning("task %s has no message in the broker, queued or held by a worker (lost "
                    "with a Redis restart?); sending it again", task_id)
        requeue(task_id, task.type)
        resent.append(task_id)
    return resent


def _unclaimed_for_long(task: TaskRow | None, now: int) -> bool:
    return (task is not None and task.state == TaskState.RUNNING and task.attempts == 0
            and kind_of(task) is not None and now - task.start_time > UNSENT_AGE_MS)


def _lost(store: Store, task: TaskRow | None) -> bool:
    if task is None or task.state != TaskState.RUNNING:
        return False
    return task.attempts > 0 and not store.has_lease(task.id)


def _give_up(store: Store, task: TaskRow, storage: BackupStorage, report: ReapReport) -> None:
    log.error("task %s lost its worker %d times; giving up", task.id, task.attempts)
    if store.fail(task.id, WorkerLost().to_api_error()):
        report.failed.append(task.id)
    # The task is FAILED now, so its backup will never be listed: what its attempts left
    # (unfinished writes, a file stored but never listed) goes.
    _remove_leftovers(storage, task)


def _remove_leftovers(storage: BackupStorage, task: TaskRow) -> None:
    kind = kind_of(task)
    if not (kind and kind.stores_backup and task.backup_id):
        return
    try:
        storage.remove_leftovers(task.backup_id)
    except (H4Error, OSError) as error:
        # The task goes on either way; the next attempt, or the sweep, removes them.
        log.warning("task %s: what its attempts left stays for now: %s", task.id, error)


def check_catalogue(store: Store, storage: BackupStorage) -> None:
    """Rebuild the catalogue from the storage once Redis has lost it (flushed, or started on
    an empty volume): until then no stored backup would be listed, downloadable or
    restorable. Cheap otherwise: one EXISTS."""
    if store.catalogue_checked():
        return
    try:
        report = reconcile(store, storage)
    except (H4Error, OSError) as error:
        # Tried again on the next run, a few seconds later; the reaping must go on meanwhile.
        log.warning("the catalogue could not be rebuilt from %s yet: %s", storage.location,
                    error)
        return
    changed = report.relisted or report.dropped or report.unrecorded
    log.log(logging.WARNING if changed else logging.INFO,
            "the catalogue was rebuilt from the storage at %s: %d listed again, %d dropped, "
            "%d without a record (`h4backup catalogue rebuild --read-unrecorded` lists those)",
            storage.location, len(report.relisted), len(report.dropped),
            len(report.unrecorded))


def sweep(store: Store, storage: BackupStorage, restore_dir: Path) -> None:
    try:
        storage.remove_orphans(ORPHAN_AGE_SECONDS)
    except (H4Error, OSError) as error:
        log.warning("unfinished writes in %s stay for now: %s", storage.location, error)
    if restore_dir.is_dir():
        remove_orphan_temporaries(restore_dir, ORPHAN_AGE_SECONDS)
        remove_orphan_stagings(restore_dir, _restoring(store))


def _restoring(store: Store) -> set[str]:
    """Backups that a living worker is restoring right now."""
    tasks = (store.get_task(task_id) for task_id in store.running_task_ids())
    return {t.backup_id for t in tasks
            if t and t.backup_id and t.type == RESTORE.name and store.has_lease(t.id)}


def remove_orphan_stagings(restore_dir: Path, restoring: set[str]) -> list[str]:
    """Staging folders (`.<backup id>-<time>.<random>.staging`) whose restore died."""
    removed = []
    for staging in restore_dir.glob(".*.staging"):
        if staging.is_dir() and not any(staging.name.startswith(f".{b}-") for b in restoring):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging.name)
    return removed
