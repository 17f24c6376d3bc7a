"""A backup: the configured sources into one stored file, listed when the task succeeds."""

from __future__ import annotations

from common.backupfile.io.progress import Reporter
from common.backupfile.io.storage import backup_file_name
from common.backupfile.write.pipeline import BackupJob, run_backup
from common.backupfile.write.sources import Source
from common.records import record_of
from worker.context import WorkerContext
from worker.jobs.base import Finish, Task, backup_id_of, secrets_of


def run(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    outcome = run_backup(_job(ctx, task), reporter)
    info = {"id": outcome.backup_id, "generatedOn": outcome.generated_on, "hash": outcome.hash,
            **({"labels": task.labels} if task.labels else {})}
    row = {**info, "file": outcome.file_name, "size": outcome.size,
           "encrypted": int(outcome.file_name == backup_file_name(outcome.backup_id, True)),
           "taskId": task.id, "files": outcome.files, "sourceBytes": outcome.source_bytes,
           "kind": task.kind or "manual"}
    # After the archive, before the listing: a backup listed is always one a rebuild finds.
    ctx.storage.write_record(outcome.backup_id, record_of(
        row, user=task.user, operation_id=task.operation_id,
        recipients=tuple(task.recipients or ()), zstd_level=ctx.settings.zstd_level))
    return Finish(info, backup=row, discard=outcome.backup_id)


def _job(ctx: WorkerContext, task: Task) -> BackupJob:
    settings = ctx.settings
    ctx.storage.prepare()
    # What the service keeps itself is never part of a backup.
    own = (settings.backup_dir, settings.restore_dir, settings.data_dir / "redis")
    return BackupJob(
        backup_id=backup_id_of(task),
        sources=tuple(Source(s.name, s.path) for s in settings.sources),
        storage=ctx.storage,
        passphrase=secrets_of(ctx, task).get("password"),
        recipients=tuple(task.recipients or ()),
        exclude=own,
        zstd_level=settings.zstd_level,
        zstd_threads=settings.zstd_threads,
        work_factor=settings.scrypt_work_factor,
    )
