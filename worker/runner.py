"""Runs one task to its end: claim it, run the pipeline, record the outcome in the store.

Nothing here knows Celery: the task module hands over a task id and gets back whether the
task is busy elsewhere (a redelivered message whose first run still holds the lease).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from common import logs
from common.errors import GeneralServerFailure, H4Error, WorkerLost
from common.tasks import backup_file_name
from worker.context import WorkerContext
from worker.maintenance import remove_partial_files
from worker.pipeline import BackupJob, BackupOutcome, run_backup
from worker.sources import Source

log = logging.getLogger("h4backup.worker")

T = TypeVar("T")
# How long a worker keeps trying to reach Redis for a write that must not be lost (claiming
# a task, recording its end) before it gives the task up to the reaper.
REDIS_PATIENCE_SECONDS = 180


def patiently(write: Callable[[], T], patience: float = REDIS_PATIENCE_SECONDS) -> T:
    """Run a Redis write, retrying through an outage (a restart, a failover) with backoff."""
    deadline, pause = time.monotonic() + patience, 0.2
    while True:
        try:
            return write()
        except redis.RedisError as exc:
            if time.monotonic() + pause > deadline:
                raise
            log.warning("Redis unavailable (%s); retrying in %.1f s", type(exc).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)



class StoreReporter:
    """The pipeline's window on the task row: progress, warnings and the stop flag."""

    def __init__(self, ctx: WorkerContext, task_id: str) -> None:
        self.ctx, self.task_id = ctx, task_id
        self.stop = threading.Event()

    def progress(self, percent: int) -> None:
        # Progress is advisory: a write lost while Redis restarts is replaced by the next one.
        try:
            self.ctx.store.record_progress(self.task_id, percent)
        except redis.RedisError:
            log.debug("progress of task %s not recorded: Redis unavailable", self.task_id)

    def warning(self, error: H4Error) -> None:
        log.warning("%s: %s", error.code, error.msg)
        patiently(lambda: self.ctx.store.add_warning(self.task_id, error.to_api_error()))

    def should_stop(self) -> bool:
        return self.stop.is_set()


class LeaseKeeper:
    """Renews the task's lease while it runs; a lost lease asks the pipeline to stop."""

    def __init__(self, ctx: WorkerContext, task_id: str, reporter: StoreReporter) -> None:
        self.ctx, self.task_id, self.reporter = ctx, task_id, reporter
        self.lease = ctx.settings.lease_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{task_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        # Renew three times per lease: one missed beat (Redis busy a moment) is no loss.
        while not self._done.wait(self.lease / 3):
            try:
                renewed = self.ctx.store.renew_lease(self.task_id, self.ctx.holder, self.lease)
            except Exception:  # Redis away for a moment: keep running, try again next beat
                log.warning("could not renew the lease of task %s", self.task_id)
                continue
            if not renewed:
                log.error("lost the lease of task %s; stopping", self.task_id)
                self.reporter.stop.set()


def generate_backup(ctx: WorkerContext, task_id: str) -> str:
    """Run a backup task; returns 'done', or 'busy' when another run holds its lease."""
    logs.clear()
    outcome, attempt = patiently(
        lambda: ctx.store.claim(task_id, ctx.holder, ctx.settings.lease_seconds))
    if outcome != "claimed":
        log.info("task %s not run: %s", task_id, outcome)
        return "busy" if outcome == "busy" else "done"
    task = patiently(lambda: ctx.store.get_task(task_id))
    logs.bind(taskId=task_id, operationID=task.get("operationID"), user=task.get("user"))
    # Whatever an earlier attempt left half-written goes first; the lease makes it ours alone.
    remove_partial_files(ctx.settings.backup_dir, task["backupId"])
    if attempt > ctx.settings.max_attempts:
        log.error("task %s failed after %d attempts", task_id, attempt - 1)
        patiently(lambda: ctx.store.fail(task_id, WorkerLost().to_api_error()))
        return "done"
    _run_backup_task(ctx, task)
    return "done"


def _run_backup_task(ctx: WorkerContext, task: dict[str, Any]) -> None:
    reporter = StoreReporter(ctx, task["id"])
    try:
        job = _backup_job(ctx, task)
        with LeaseKeeper(ctx, task["id"], reporter):
            outcome = run_backup(job, reporter)
    except H4Error as error:
        log.warning("backup failed: %s %s", error.code, error.msg)
        api_error = error.to_api_error()
        patiently(lambda: ctx.store.fail(task["id"], api_error))
        return
    except Exception:
        log.exception("backup failed unexpectedly")
        patiently(lambda: ctx.store.fail(task["id"], GeneralServerFailure().to_api_error()))
        return
    _record_backup(ctx, task, outcome)


def _backup_job(ctx: WorkerContext, task: dict[str, Any]) -> BackupJob:
    settings = ctx.settings
    settings.backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return BackupJob(
        backup_id=task["backupId"],
        sources=tuple(Source(s.name, s.path) for s in settings.sources),
        backup_dir=settings.backup_dir,
        passphrase=_password(ctx, task),
        exclude=(settings.backup_dir, settings.restore_dir, settings.data_dir / "redis"),
        zstd_level=settings.zstd_level,
        zstd_threads=settings.zstd_threads,
        work_factor=settings.scrypt_work_factor,
    )


def _password(ctx: WorkerContext, task: dict[str, Any]) -> str | None:
    if not int(task.get("encrypted") or 0):
        return None
    sealed = patiently(lambda: ctx.store.sealed_password(task["id"]))
    if sealed is None:
        raise GeneralServerFailure(msg="The backup password is no longer available.")
    try:
        return ctx.sealer.open(sealed, task["id"])
    except ValueError:
        raise GeneralServerFailure(
            msg="The backup password cannot be opened: API and workers use different "
                "transit keys (H4_TRANSIT_KEY).") from None


def _record_backup(ctx: WorkerContext, task: dict[str, Any], outcome: BackupOutcome) -> None:
    info = {"id": outcome.backup_id, "generatedOn": outcome.generated_on, "hash": outcome.hash}
    row = {**info, "file": outcome.path.name, "size": outcome.size,
           "encrypted": int(outcome.path.name == backup_file_name(outcome.backup_id, True)),
           "taskId": task["id"], "files": outcome.files, "sourceBytes": outcome.source_bytes}
    if patiently(lambda: ctx.store.succeed(task["id"], info, "BackupInfo", backup=row)):
        log.info("backup %s stored: %d bytes, %s", outcome.backup_id, outcome.size, outcome.hash)
        return
    # The task ended meanwhile (canceled or given up on): its file must not linger unlisted.
    log.warning("task %s ended before its backup was recorded; removing the file", task["id"])
    outcome.path.unlink(missing_ok=True)
