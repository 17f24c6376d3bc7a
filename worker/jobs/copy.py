"""A copy: a listed backup and its record brought to the replica store, the copy proved by its
SHA-512 as the replica holds it; the listing then names both stores."""

from __future__ import annotations

import logging

import redis

from common.backupfile.io.mirrored import MirroredStorage
from common.backupfile.io.progress import Reporter
from common.backupfile.io.replicate import CopyJob, copy_backup
from common.clock import now_ms
from common.errors import BackupNotFound, GeneralServerFailure, H4Error
from common.kinds import COPY
from common.tasks import TaskRow, new_task
from worker.context import WorkerContext
from worker.jobs.base import Finish, Task, listed_backup, record_or_listing
from worker.retry import patiently
from worker.schedule import SCHEDULER_USER

log = logging.getLogger("h4backup.worker")

# The catch-up sweep: how often it reads the listing, how long a new backup's own copy task
# has before the sweep counts its copy as missing, and how often one backup is tried again.
SWEEP_SECONDS = 60
SETTLE_SECONDS = 600
RETRY_SECONDS = 3600


def run(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    storage = mirrored(ctx)
    listed = listed_backup(ctx, task)
    size = copy_backup(CopyJob(backup_id=listed["id"], source=storage.primary,
                               target=storage.replica, file_name=listed["file"],
                               expected_hash=listed["hash"]), reporter)
    # The record too: the replica alone is enough to list the backup again.
    record = record_or_listing(storage.primary, task, listed)
    storage.replica.write_record(listed["id"], record, replace=True)
    if not patiently(lambda: ctx.store.update_listed_backup(
            listed["id"], {"replicatedOn": now_ms(), "replicaHash": listed["hash"]})):
        # Deleted meanwhile: its copy must not outlive it.
        storage.replica.delete_backup(listed["id"], listed["file"])
        raise BackupNotFound(listed["id"])
    return Finish({"backupId": listed["id"], "hash": listed["hash"],
                   "replica": storage.replica.location, "bytes": size})


def mirrored(ctx: WorkerContext) -> MirroredStorage:
    if not isinstance(ctx.storage, MirroredStorage):
        raise GeneralServerFailure(msg="No replica store is configured (H4_REPLICA).")
    return ctx.storage


def catch_up(ctx: WorkerContext, now: int | None = None) -> list[str]:
    """Copy tasks for the listed backups whose replica copy is missing or stale (its copy
    failed while the replica was down, or a copy was never queued): at most one sweep a
    minute, one attempt per backup every RETRY_SECONDS. Returns the backups queued."""
    if not _replicating(ctx) or not ctx.store.copy_sweep_due(SWEEP_SECONDS):
        return []
    now = now or now_ms()
    queued = []
    for backup in ctx.store.list_backups():
        settled = now - int(backup["generatedOn"]) > SETTLE_SECONDS * 1000
        if (backup.get("replicaHash") != backup["hash"] and settled
                and ctx.store.copy_retry_due(backup["id"], RETRY_SECONDS)):
            ctx.starter().follow_up(_copy_row(backup["id"], SCHEDULER_USER))
            queued.append(backup["id"])
    if queued:
        log.warning("%d backup(s) had no good copy on the replica: copies queued",
                    len(queued))
    return queued


def start_copy(ctx: WorkerContext, task: Task, backup_id: str) -> None:
    """With a replica configured, queue the copy of a backup that changed (a new one, a
    rekeyed one) as its own task, on behalf of the task's user."""
    if not _replicating(ctx):
        return
    row = _copy_row(backup_id, task.user, task.operation_id)
    try:
        patiently(lambda: ctx.starter().follow_up(row))
    except (H4Error, redis.RedisError) as error:
        # The backup stands; its listing shows no replica, and the reaper's catch-up or
        # POST /backups/{id}/copy makes the copy later.
        log.error("could not start the copy of backup %s to the replica: %s", backup_id, error)


def _replicating(ctx: WorkerContext) -> bool:
    """Whether this worker keeps second copies and can start the tasks that make them."""
    return isinstance(ctx.storage, MirroredStorage) and ctx.message_for is not None


def _copy_row(backup_id: str, user: str, operation_id: str = "") -> TaskRow:
    return new_task(user, COPY.name, "backup", backup_id, operation_id=operation_id,
                    backup_id=backup_id)
