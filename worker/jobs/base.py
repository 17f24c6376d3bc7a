"""What every handler shares: how a task ends well, and the secret the API sealed for it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.backupfile.io.progress import Reporter
from common.errors import BackupNotFound, GeneralServerFailure, PasswordUnavailable
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
    discard: str | None = None  # remove this stored file if the task ended meanwhile


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




def listed_backup(ctx: WorkerContext, task: Task) -> dict[str, Any]:
    """The catalogue row of the backup a restore or verify reads."""
    listed = patiently(lambda: ctx.store.get_backup(task["backupId"]))
    if listed is None:
        raise BackupNotFound(task["backupId"])
    return listed


def opening_keys(ctx: WorkerContext, task: Task) -> dict[str, Any]:
    """The password or identity of the task, as RestoreJob and VerifyJob take them."""
    secret = secrets_of(ctx, task)
    identity = secret.get("identity")
    return {"passphrase": secret.get("password"), "identities": (identity,) if identity else (),
            "max_work_factor": max(MAX_READ_WORK_FACTOR, ctx.settings.scrypt_work_factor)}
