"""What every handler shares: how a task ends well, and the secret the API sealed for it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.backupfile.io.progress import Reporter
from common.backupfile.io.storage import BackupStorage
from common.errors import BackupNotFound, GeneralServerFailure, PasswordUnavailable
from common.records import record_of
from common.tasks import TaskRow
from worker.context import WorkerContext
from worker.retry import patiently

log = logging.getLogger("h4backup.worker")

# Reading a backup may cost at most this scrypt work factor (1 GiB at 20): a hostile file
# must not make a worker allocate gigabytes.
MAX_READ_WORK_FACTOR = 20


@dataclass(frozen=True)
class Finish:
    """How a task ends well: its result (of the fields its kind declares, the type it names),
    and for a backup the catalogue row to list."""

    result: dict[str, Any] | None
    backup: dict[str, Any] | None = None
    discard: str | None = None  # a backup id: what it stored goes if the task ended meanwhile


Task = TaskRow  # the row as the worker re-read it; the message carried its id only
Handler = Callable[[WorkerContext, Task, Reporter], Finish]


def secrets_of(ctx: WorkerContext, task: Task) -> dict[str, str]:
    """The password or identity the API sealed for this task, opened; {} when none was given."""
    sealed = patiently(lambda: ctx.store.sealed_password(task.id))
    if sealed is None:
        if task.encrypted and not task.recipients:
            # Sealed passwords live in Redis memory only: a Redis restart drops them.
            raise PasswordUnavailable("Redis restarted, or the task outlived it")
        return {}
    try:
        opened = ctx.sealer.open(sealed, task.id)
    except ValueError as exc:
        raise PasswordUnavailable(str(exc)) from None
    try:
        secret = json.loads(opened)
    except ValueError:
        secret = None
    if not isinstance(secret, dict) or not all(isinstance(v, str) for v in secret.values()):
        raise GeneralServerFailure(msg="The task's sealed key is malformed.")
    return secret


def listed_backup(ctx: WorkerContext, task: Task) -> dict[str, Any]:
    """The catalogue row of the backup a restore or verify reads."""
    backup_id = backup_id_of(task)
    listed = patiently(lambda: ctx.store.get_backup(backup_id))
    if listed is None:
        raise BackupNotFound(backup_id)
    return listed


def record_or_listing(storage: BackupStorage, task: Task, listed: dict[str, Any]) -> dict:
    """The backup's record as stored beside it, or, for a backup stored before records
    existed, one made from its listing."""
    return storage.read_record(listed["id"]) or record_of(
        listed, user=task.user, operation_id=task.operation_id)


def backup_id_of(task: Task) -> str:
    """The backup the task makes or reads. The starter refuses a row of these kinds without
    one, so its absence here is a bug: the task fails as one rather than naming no file."""
    if not task.backup_id:
        raise GeneralServerFailure(msg=f"Task {task.id} names no backup.")
    return task.backup_id


def opening_keys(ctx: WorkerContext, task: Task,
                 secret: dict[str, str] | None = None) -> dict[str, Any]:
    """The password or identity of the task, as RestoreJob, VerifyJob and RekeyJob take them;
    from `secret` when the caller opened it already."""
    secret = secrets_of(ctx, task) if secret is None else secret
    identity = secret.get("identity")
    return {"passphrase": secret.get("password"), "identities": (identity,) if identity else (),
            "max_work_factor": max(MAX_READ_WORK_FACTOR, ctx.settings.scrypt_work_factor)}
