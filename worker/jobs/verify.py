"""A verify: the stored bytes against the listed SHA-512, and with the key every file too. The
outcome marks the backup in the listing (`integrity`, `checkedOn`); a scheduled check given the
configured identity reads in full only the backups that identity opens."""

from __future__ import annotations

from typing import Any

from common.backupfile.format.age import AgeError, header_opens
from common.backupfile.io.progress import Reporter
from common.backupfile.read.verify import VerifyJob, VerifyOutcome, run_verify
from common.clock import now_ms
from common.errors import BackupCorrupted
from worker.context import WorkerContext
from worker.jobs.base import Finish, Task, listed_backup, opening_keys
from worker.retry import patiently

# An age header is a few hundred bytes per recipient: this holds the largest one allowed.
_HEAD_BYTES = 64 << 10


def run(ctx: WorkerContext, task: Task, reporter: Reporter) -> Finish:
    listed = listed_backup(ctx, task)
    keys = opening_keys(ctx, task)
    if task.kind == "scheduled" and keys["identities"] and not _opens(ctx, listed, keys):
        keys = {**keys, "identities": ()}  # not encrypted to it: the SHA-512 alone
    try:
        outcome = _verify(ctx, listed, keys, reporter)
    except BackupCorrupted:
        now_listed = listed_backup(ctx, task)
        if now_listed["hash"] == listed["hash"]:
            _mark(ctx, listed["id"], "damaged")
            raise
        # A rekey rewrote the file while this read it: check it as it is listed now.
        outcome = _verify_or_mark(ctx, now_listed, keys, reporter)
    # Without the key, no file was read: say so, rather than counting zero files.
    checked = outcome.content_checked
    _mark(ctx, listed["id"], "verified" if checked else "hash-ok")
    return Finish(_result(outcome))


def _verify(ctx: WorkerContext, listed: dict[str, Any], keys: dict[str, Any],
            reporter: Reporter) -> VerifyOutcome:
    return run_verify(VerifyJob(
        backup_id=listed["id"], storage=ctx.storage, file_name=listed["file"],
        expected_hash=listed["hash"], **keys), reporter)


def _verify_or_mark(ctx: WorkerContext, listed: dict[str, Any], keys: dict[str, Any],
                    reporter: Reporter) -> VerifyOutcome:
    try:
        return _verify(ctx, listed, keys, reporter)
    except BackupCorrupted:
        _mark(ctx, listed["id"], "damaged")
        raise


def _result(outcome: VerifyOutcome) -> dict[str, Any]:
    checked = outcome.content_checked
    return {"backupId": outcome.backup_id, "hashOk": outcome.hash_ok,
            "contentChecked": checked, "files": outcome.files if checked else None,
            "bytes": outcome.bytes if checked else None}


def _mark(ctx: WorkerContext, backup_id: str, integrity: str) -> None:
    """The listing says how the backup's last check went, and when."""
    patiently(lambda: ctx.store.update_listed_backup(
        backup_id, {"integrity": integrity, "checkedOn": now_ms()}))


def _opens(ctx: WorkerContext, listed: dict[str, Any], keys: dict[str, Any]) -> bool:
    """Whether the identity opens the backup's header; a damaged header counts as opening,
    so that the full check reports the damage."""
    try:
        with ctx.storage.open(listed["file"]) as opened:
            head = opened.stream.read(_HEAD_BYTES)
        return header_opens(head, identities=keys["identities"],
                            max_work_factor=keys["max_work_factor"])
    except AgeError:
        return True
    except FileNotFoundError:
        return True  # the verify itself says BackupNotFound
