"""A restore: a listed backup into a new folder under the restore root, every file checked."""

from __future__ import annotations

from common.backupfile.io.progress import Reporter
from common.backupfile.read.restore import RestoreJob, run_restore
from worker.context import WorkerContext
from worker.jobs.base import Finish, Task, listed_backup, opening_keys


def run(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    listed = listed_backup(ctx, task)
    ctx.settings.restore_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    outcome = run_restore(RestoreJob(
        backup_id=listed["id"], storage=ctx.storage, file_name=listed["file"],
        restore_root=ctx.settings.restore_dir, expected_hash=listed["hash"],
        **opening_keys(ctx, task)), reporter)
    return Finish({"backupId": outcome.backup_id, "path": str(outcome.path),
                   "files": outcome.files, "bytes": outcome.bytes})
