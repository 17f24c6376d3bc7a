"""A rekey: the backup's file key wrapped again for a new passphrase or new recipients. Only
the age header changes; the payload stays as it is, so nothing is decompressed or
re-encrypted. The old SHA-512 is checked before anything is written, the new one is taken over
the bytes as stored, and the record and the listing follow the file."""

from __future__ import annotations

from common.backupfile.io.mirrored import MirroredStorage
from common.backupfile.io.progress import Reporter
from common.backupfile.write.rekey import RekeyJob, RekeyOutcome, run_rekey
from common.errors import BackupBusy, BackupNotEncrypted, BackupNotFound
from common.records import rekeyed_record
from worker.context import WorkerContext
from worker.jobs.base import (
    Finish,
    Task,
    listed_backup,
    opening_keys,
    record_or_listing,
    secrets_of,
)
from worker.jobs.copy import start_copy
from worker.retry import patiently

# The hold ends with the task (FINISH lets it go); this only bounds a hold whose task row
# vanished with a Redis flush.
HOLD_SECONDS = 6 * 3600


def run(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    listed = listed_backup(ctx, task)
    backup_id = listed["id"]
    if not int(listed.get("encrypted") or 0):
        raise BackupNotEncrypted(backup_id)
    _hold(ctx, task, backup_id)
    secret = secrets_of(ctx, task)
    outcome = run_rekey(RekeyJob(
        backup_id=backup_id, storage=ctx.storage, file_name=listed["file"],
        expected_hash=listed["hash"], new_passphrase=secret.get("newPassword") or None,
        new_recipients=tuple(task.recipients or ()),
        work_factor=ctx.settings.scrypt_work_factor,
        **opening_keys(ctx, task, secret)), reporter)
    _record(ctx, task, listed, outcome)
    # The replica's copy no longer counts (replicaHash is the old hash); it goes below.
    if not patiently(lambda: ctx.store.update_listed_backup(
            backup_id, {"hash": outcome.hash, "size": outcome.size, "replicaHash": ""})):
        raise BackupNotFound(backup_id)  # cannot be unlisted while held: a flush took it
    _renew_replica(ctx, task, listed)
    return Finish({"backupId": backup_id, "hash": outcome.hash,
                   "previousHash": listed["hash"]})


def _hold(ctx: WorkerContext, task: Task, backup_id: str) -> None:
    """No delete, prune or second rekey while this one rewrites the file."""
    held = patiently(lambda: ctx.store.hold_backup(backup_id, task.id, HOLD_SECONDS))
    if held == "missing":
        raise BackupNotFound(backup_id)
    if held != "held":
        raise BackupBusy(backup_id, held)


def _record(ctx: WorkerContext, task: Task, listed: dict, outcome: RekeyOutcome) -> None:
    """The record beside the file says what opens it now, so that a rebuild lists the new
    hash. A backup stored before records existed gets one from its listing."""
    record = record_or_listing(ctx.storage, task, listed)
    ctx.storage.write_record(listed["id"], rekeyed_record(
        record, outcome.hash, outcome.size, tuple(task.recipients or ())), replace=True)


def _renew_replica(ctx: WorkerContext, task: Task, listed: dict) -> None:
    """The replica's copy still opens with the old key, which is what a rekey is for ending:
    it goes now, and a copy task brings the rekeyed file there."""
    if not isinstance(ctx.storage, MirroredStorage):
        return
    ctx.storage.replica.delete_backup(listed["id"], listed["file"])
    start_copy(ctx, task, listed["id"])
