"""Runs one task to its end: claim it, run its job, record the outcome in the store.

Nothing here knows Celery: the task module hands over a task id and gets back whether the
task is busy elsewhere (a redelivered message whose first run still holds the lease).
"""

from __future__ import annotations

import logging
import threading

import redis

from common import logs
from common.errors import GeneralServerFailure, H4Error, TaskCanceled, WorkerLost
from common.kinds import KINDS, kind_of
from common.tasks import TaskRow
from worker import jobs, schedule
from worker.context import WorkerContext
from worker.jobs.copy import start_copy
from worker.retry import patiently

log = logging.getLogger("h4backup.worker")
# The longest the end of a task waits for the lease thread, which may be inside a Redis call
# that only the 30 s socket timeout would end; left behind, it ends when that call returns.
_LEASE_JOIN_SECONDS = 5.0


class StoreReporter:
    """The pipeline's window on the task row: progress, warnings and the stop flag."""

    def __init__(self, ctx: WorkerContext, task_id: str) -> None:
        self.ctx, self.task_id = ctx, task_id
        self.lease_lost = threading.Event()

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
        """True once the task was canceled or its lease lost (callers check ~10 times a second)."""
        if self.lease_lost.is_set():
            return True
        try:
            return self.ctx.store.cancel_requested(self.task_id)
        except redis.RedisError:
            return False


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
        self._thread.join(_LEASE_JOIN_SECONDS)

    def _beat(self) -> None:
        # Renew three times per lease: one missed beat (Redis busy a moment) is no loss.
        while not self._done.wait(self.lease / 3):
            if not self._renew():
                return

    def _renew(self) -> bool:
        """False once the lease is lost: it may be another run's now, so renewing stops."""
        try:
            renewed = self.ctx.store.renew_lease(self.task_id, self.ctx.holder, self.lease)
        except Exception:  # Redis away for a moment: keep running, try again next beat
            log.warning("could not renew the lease of task %s", self.task_id)
            return True
        if renewed or self._done.is_set():
            return True
        log.error("lost the lease of task %s; stopping", self.task_id)
        self.reporter.lease_lost.set()
        return False


def run_task(ctx: WorkerContext, task_id: str) -> str:
    """Run any task to its end; returns 'done', or 'busy' when another run holds its lease."""
    logs.clear()
    outcome, attempt = patiently(
        lambda: ctx.store.claim(task_id, ctx.holder, ctx.settings.lease_seconds))
    if outcome != "claimed":
        log.info("task %s not run: %s", task_id, outcome)
        return "busy" if outcome == "busy" else "done"
    task = patiently(lambda: ctx.store.get_task(task_id))
    logs.bind(taskId=task_id, operationID=task.operation_id, user=task.user)
    refusal = _refusal(ctx, task, attempt)
    if refusal is not None:
        _quietly_clear_leftovers(ctx, task)
        patiently(lambda: ctx.store.fail(task_id, refusal.to_api_error()))
        return "done"
    _run_claimed(ctx, task)
    return "done"


def _clear_leftovers(ctx: WorkerContext, task: TaskRow) -> None:
    """What an earlier attempt left half-written goes first; the lease makes it ours alone.
    A storage that fails here fails the task, like any failure of the attempt itself."""
    kind = kind_of(task)
    if task.backup_id and kind and kind.stores_backup:
        ctx.storage.remove_leftovers(task.backup_id)


def _quietly_clear_leftovers(ctx: WorkerContext, task: TaskRow) -> None:
    try:
        _clear_leftovers(ctx, task)
    except (H4Error, OSError) as error:
        # The reaper's sweep removes them later; the task's refusal is what matters now.
        log.warning("task %s: leftovers stay for now: %s", task.id, error)


def _refusal(ctx: WorkerContext, task: TaskRow, attempt: int) -> H4Error | None:
    """Why a claimed task must end without running, if it must."""
    if attempt > ctx.settings.max_attempts:
        log.error("task %s failed after %d attempts", task.id, attempt - 1)
        return WorkerLost()
    if ctx.store.cancel_requested(task.id):
        return TaskCanceled()
    if kind_of(task) is None:
        return GeneralServerFailure(msg=f"Unknown task type {task.type!r}.")
    return None


def _run_claimed(ctx: WorkerContext, task: TaskRow) -> None:
    reporter = StoreReporter(ctx, task.id)
    try:
        with LeaseKeeper(ctx, task.id, reporter):
            _clear_leftovers(ctx, task)
            finish = jobs.HANDLERS[task.type](ctx, task, reporter)
    except H4Error as error:
        _record_failure(ctx, task, reporter, error)
        return
    except Exception:
        log.exception("%s task failed unexpectedly", task.type)
        _record_failure(ctx, task, reporter, GeneralServerFailure())
        return
    except BaseException:
        # Celery's pool ends a task it can no longer acknowledge with SystemExit: the task
        # stays RUNNING until its lease expires and the reaper sends it again.
        log.warning("%s task %s interrupted; it runs again once its lease expires",
                    task.type, task.id)
        raise
    if not _as_declared(task, finish):
        _record_failure(ctx, task, reporter, GeneralServerFailure())
        return
    _record_success(ctx, task, finish)


def _as_declared(task: TaskRow, finish: jobs.Finish) -> bool:
    """The API documents and the CLI shows the result fields the kinds table declares: a
    handler that drifted from it is a bug to fail loudly on, not a result to publish."""
    declared = KINDS[task.type].result_names(present=finish.result or ())
    if finish.result is None or list(finish.result) == declared:
        return True
    log.error("%s result has fields %s, not the declared %s", task.type,
              list(finish.result), declared)
    return False


def _record_failure(ctx: WorkerContext, task: TaskRow, reporter: StoreReporter,
                    error: H4Error) -> None:
    if reporter.lease_lost.is_set():
        log.warning("task %s stopped after losing its lease; its new holder ends it", task.id)
        return
    log.warning("%s task failed: %s %s", task.type, error.code, error.msg)
    api_error = error.to_api_error()
    patiently(lambda: ctx.store.fail(task.id, api_error))


def _record_success(ctx: WorkerContext, task: TaskRow, finish: jobs.Finish) -> None:
    kind = KINDS[task.type]
    if patiently(lambda: ctx.store.succeed(task.id, finish.result, kind.result_type,
                                           backup=finish.backup)):
        log.info("%s task %s succeeded: %s", task.type, task.id, finish.result)
        if finish.backup:
            log.info("backup %s stored: %d bytes", finish.backup["id"], finish.backup["size"])
            patiently(lambda: schedule.after_success(ctx.store, ctx.storage, task))
            start_copy(ctx, task, finish.backup["id"])
        return
    # The task ended meanwhile (canceled or given up on): its file must not linger unlisted.
    log.warning("task %s ended before its outcome was recorded", task.id)
    if finish.discard is not None:
        ctx.storage.remove_leftovers(finish.discard)
