"""Celery tasks: thin wrappers that hand ids to plain Python. Messages carry ids only."""

from celery import Task

from common import alerts as common_alerts
from common.celery_app import CONTROL_QUEUE, TaskMessage, run_message
from common.kinds import KINDS, TaskKind
from common.starting import TaskStarter
from common.tasks import ALERT_DELIVER, HEALTH_PING, REAP, SCHEDULE_TICK
from worker import alerts, maintenance, runner, schedule
from worker.app import celery
from worker.context import worker_context
from worker.jobs import copy as copy_job
from worker.process import MemoryKeeper

# One per process: each pool process keeps its own floor.
MEMORY = MemoryKeeper()


def _run(task: Task, task_id: str) -> None:
    ctx = worker_context()
    try:
        outcome = runner.run_task(ctx, task_id)
    finally:
        # What this task's pipeline left would otherwise sit under the next one's scrypt.
        MEMORY.after_task()
    if outcome == "busy":
        # A redelivered message while the first run still holds the lease: look again once
        # the lease would have expired if that run died.
        raise task.retry(countdown=ctx.settings.lease_seconds)


def _celery_task_for(kind: TaskKind) -> Task:
    """Every kind runs the same way: its message names the task row, the runner does the rest."""

    def run(self: Task, task_id: str) -> None:
        _run(self, task_id)

    run.__name__ = run.__qualname__ = kind.celery_task.replace(".", "_")
    return celery.task(name=kind.celery_task, bind=True, max_retries=None)(run)


CELERY_TASKS = {name: _celery_task_for(kind) for name, kind in KINDS.items()}


def send(task_id: str, kind: str) -> None:
    """Queue the message of a task whose row exists and whose worker was lost."""
    worker_context().store.enqueue(_message(KINDS[kind].celery_task, task_id))


@celery.task(name=REAP, queue=CONTROL_QUEUE)
def reap() -> None:
    ctx = worker_context()
    settings = ctx.settings
    maintenance.check_catalogue(ctx.store, ctx.storage)
    maintenance.reap(ctx.store, send, settings.max_attempts, ctx.storage)
    maintenance.sweep(ctx.store, ctx.storage, settings.restore_dir)
    copy_job.catch_up(ctx)


@celery.task(name=SCHEDULE_TICK, queue=CONTROL_QUEUE)
def schedule_tick() -> None:
    ctx = worker_context()
    starter = TaskStarter(ctx.store, ctx.settings, _message, ctx.sealer)
    try:
        schedule.tick(starter)
        schedule.check_tick(starter, ctx.settings.check_identity_file)
    finally:
        # Alerts ride on the same one-second tick: an ended task's event is sent within it.
        alerts.dispatch(ctx.store, lambda delivery_id: ctx.store.enqueue(
            _message(ALERT_DELIVER, delivery_id)))


@celery.task(name=ALERT_DELIVER, queue=CONTROL_QUEUE, bind=True,
             max_retries=common_alerts.MAX_ATTEMPTS - 1)
def deliver_alert(self: Task, delivery_id: str) -> None:
    ctx = worker_context()
    attempt = self.request.retries + 1
    secret = common_alerts.load_secret(ctx.settings.alert_secret_file)
    if not alerts.deliver(ctx.store, secret, delivery_id, attempt):
        raise self.retry(countdown=common_alerts.retry_pause(attempt))


def _message(name: str, task_id: str) -> TaskMessage:
    return run_message(celery, name, task_id)


@celery.task(name=HEALTH_PING, queue=CONTROL_QUEUE)
def health_ping(nonce: str) -> None:
    ctx = worker_context()
    ctx.store.record_pong(nonce, ctx.holder)
