"""A restore: a listed backup into a new folder under the restore root, every file checked.
With a replica configured, a primary copy that is missing or damaged gives way to the
replica's."""

from __future__ import annotations

import logging
from typing import Any

from common.backupfile.io.mirrored import MirroredStorage
from common.backupfile.io.progress import Reporter
from common.backupfile.io.storage import BackupStorage
from common.backupfile.read.restore import RestoreJob, RestoreOutcome, run_restore
from common.errors import BackupCorrupted
from worker.context import WorkerContext
from worker.jobs.base import Finish, Task, listed_backup, opening_keys

log = logging.getLogger("h4backup.worker")


def run(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    listed = listed_backup(ctx, task)
    ctx.settings.restore_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys = opening_keys(ctx, task)
    try:
        outcome = _restore(ctx, ctx.storage, listed, keys, reporter)
    except BackupCorrupted as damage:
        if not isinstance(ctx.storage, MirroredStorage):
            raise
        log.warning("backup %s: the primary copy is damaged (%s); restoring the replica's",
                    listed["id"], damage.msg)
        outcome = _restore(ctx, ctx.storage.replica, listed, keys, reporter)
    return Finish({"backupId": outcome.backup_id, "path": str(outcome.path),
                   "files": outcome.files, "bytes": outcome.bytes})


def _restore(ctx: WorkerContext, storage: BackupStorage, listed: dict[str, Any],
             keys: dict[str, Any], reporter: Reporter) -> RestoreOutcome:
    return run_restore(RestoreJob(
        backup_id=listed["id"], storage=storage, file_name=listed["file"],
        restore_root=ctx.settings.restore_dir, expected_hash=listed["hash"], **keys), reporter)
