"""A verify: the stored bytes against the listed SHA-512, and with the key every file too."""

from __future__ import annotations

from common.backupfile.io.progress import Reporter
from common.backupfile.read.verify import VerifyJob, run_verify
from worker.context import WorkerContext
from worker.jobs.base import Finish, Task, listed_backup, opening_keys


def run(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    listed = listed_backup(ctx, task)
    outcome = run_verify(VerifyJob(
        backup_id=listed["id"], storage=ctx.storage, file_name=listed["file"],
        expected_hash=listed["hash"], **opening_keys(ctx, task)), reporter)
    # Without the key, no file was read: say so, rather than counting zero files.
    checked = outcome.content_checked
    return Finish({"backupId": outcome.backup_id, "hashOk": outcome.hash_ok,
                   "contentChecked": checked, "files": outcome.files if checked else None,
                   "bytes": outcome.bytes if checked else None})
