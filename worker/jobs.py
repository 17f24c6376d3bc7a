"""What each kind of task does once claimed: build its job from the row, run the plain-Python
pipeline, and say how the task ends. The runner owns claiming, leases and recording the end."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.backupfile.io.progress import Reporter
from common.backupfile.io.storage import backup_file_name
from common.backupfile.read.restore import RestoreJob, run_restore
from common.backupfile.read.verify import VerifyJob, run_verify
from common.backupfile.write.pipeline import BackupJob, run_backup
from common.backupfile.write.sources import Source
from common.errors import BackupNotFound, GeneralServerFailure, PasswordUnavailable
from worker.context import WorkerContext
from worker.retry import patiently

log = logging.getLogger("h4backup.worker")

# Reading a backup may cost at most this scrypt work factor (1 GiB at 20): a hostile file
# must not make a worker allocate gigabytes.
MAX_READ_WORK_FACTOR = 20


@dataclass(frozen=True)
class Finish:
    """How a task ends well: its result, and for a backup the catalogue row to list."""

    result: dict[str, Any] | None
    result_type: str | None
    backup: dict[str, Any] | None = None
    discard: Path | None = None  # remove this file if the task ended meanwhile


Task = dict[str, Any]
Handler = Callable[[WorkerContext, Task, Reporter], Finish]


def secrets_of(ctx: WorkerContext, task: Task) -> dict[str, str]:
    """The password or identity the API sealed for this task, opened; {} when none was given."""
    sealed = patiently(lambda: ctx.store.sealed_password(task["id"]))
    if sealed is None:
        if int(task.get("encrypted") or 0) and not task.get("recipients"):
            # Sealed passwords live in Redis memory only: a Redis restart drops them.
            raise PasswordUnavailable("Redis restarted, or the task outlived it")
        return {}
    try:
        opened = ctx.sealer.open(sealed, task["id"])
    except ValueError as exc:
        raise PasswordUnavailable(str(exc)) from None
    try:
        return json.loads(opened)
    except ValueError:
        raise GeneralServerFailure(msg="The task's sealed key is malformed.") from None


def backup(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    settings = ctx.settings
    settings.backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    job = BackupJob(
        backup_id=task["backupId"],
        sources=tuple(Source(s.name, s.path) for s in settings.sources),
        backup_dir=settings.backup_dir,
        passphrase=secrets_of(ctx, task).get("password"),
        recipients=tuple(task.get("recipients") or ()),
        exclude=(settings.backup_dir, settings.restore_dir, settings.data_dir / "redis"),
        zstd_level=settings.zstd_level,
        zstd_threads=settings.zstd_threads,
        work_factor=settings.scrypt_work_factor,
    )
    outcome = run_backup(job, reporter)
    info = {"id": outcome.backup_id, "generatedOn": outcome.generated_on, "hash": outcome.hash}
    row = {**info, "file": outcome.path.name, "size": outcome.size,
           "encrypted": int(outcome.path.name == backup_file_name(outcome.backup_id, True)),
           "taskId": task["id"], "files": outcome.files, "sourceBytes": outcome.source_bytes,
           "kind": task.get("kind") or "manual"}
    return Finish(info, "BackupInfo", backup=row, discard=outcome.path)


def _stored(ctx: WorkerContext, task: Task) -> tuple[dict[str, Any], Path]:
    listed = patiently(lambda: ctx.store.get_backup(task["backupId"]))
    if listed is None:
        raise BackupNotFound(task["backupId"])
    return listed, ctx.settings.backup_dir / listed["file"]


def _keys(ctx: WorkerContext, secret: dict[str, str]) -> dict[str, Any]:
    identity = secret.get("identity")
    return {"passphrase": secret.get("password"), "identities": (identity,) if identity else (),
            "max_work_factor": max(MAX_READ_WORK_FACTOR, ctx.settings.scrypt_work_factor)}


def restore(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    listed, path = _stored(ctx, task)
    ctx.settings.restore_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    outcome = run_restore(RestoreJob(
        backup_id=listed["id"], backup_path=path, restore_root=ctx.settings.restore_dir,
        expected_hash=listed["hash"], **_keys(ctx, secrets_of(ctx, task))), reporter)
    return Finish({"backupId": outcome.backup_id, "path": str(outcome.path),
                   "files": outcome.files, "bytes": outcome.bytes}, "RestoreInfo")


def verify(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    listed, path = _stored(ctx, task)
    outcome = run_verify(VerifyJob(
        backup_id=listed["id"], backup_path=path, expected_hash=listed["hash"],
        **_keys(ctx, secrets_of(ctx, task))), reporter)
    # Without the key, no file was read: say so, rather than counting zero files.
    checked = outcome.content_checked
    return Finish({"backupId": outcome.backup_id, "hashOk": outcome.hash_ok,
                   "contentChecked": checked, "files": outcome.files if checked else None,
                   "bytes": outcome.bytes if checked else None}, "VerifyInfo")


HANDLERS: dict[str, Handler] = {"backup": backup, "restore": restore, "verify": verify}
