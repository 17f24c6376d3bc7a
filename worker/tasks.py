"""Celery tasks: thin wrappers that hand ids to plain Python. Messages carry ids only."""

from celery import Task

from common.celery_app import CONTROL_QUEUE, TaskMessage, run_message
from common.starting import TaskStarter
from common.tasks import (
    CELERY_TASK_FOR,
    GENERATE_BACKUP,
    HEALTH_PING,
    REAP,
    RESTORE_BACKUP,
    SCHEDULE_TICK,
    VERIFY_BACKUP,
)
from worker import maintenance, runner, schedule
from worker.app import celery
from worker.context import worker_context


def _run(task: Task, task_id: str) -> None:
    ctx = worker_context()
    if runner.run_task(ctx, task_id) == "busy":
        # A redelivered message while the first run still holds the lease: look again once
        # the lease would have expired if that run died.
        raise task.retry(countdown=ctx.settings.lease_seconds)


@celery.task(name=GENERATE_BACKUP, bind=True, max_retries=None)
def generate_backup(self: Task, task_id: str) -> None:
    _run(self, task_id)


@celery.task(name=RESTORE_BACKUP, bind=True, max_retries=None)
def restore_backup(self: Task, task_id: str) -> None:
    _run(self, task_id)


@celery.task(name=VERIFY_BACKUP, bind=True, max_retries=None)
def verify_backup(self: Task, task_id: str) -> None:
    _run(self, task_id)


def send(task_id: str, kind: str) -> None:
    """Queue the message of a task whose row exists and whose worker was lost."""
    worker_context().store.enqueue(_message(CELERY_TASK_FOR[kind], task_id))


@celery.task(name=REAP, queue=CONTROL_QUEUE)
def reap() -> None:
    ctx = worker_context()
    settings = ctx.settings
    maintenance.reap(ctx.store, send, settings.max_attempts, settings.backup_dir)
    maintenance.sweep(ctx.store, settings.backup_dir, settings.restore_dir)


@celery.task(name=SCHEDULE_TICK, queue=CONTROL_QUEUE)
def schedule_tick() -> None:
    ctx = worker_context()
    schedule.tick(TaskStarter(ctx.store, ctx.settings, _message))


def _message(name: str, task_id: str) -> TaskMessage:
    return run_message(celery, name, task_id)


@celery.task(name=HEALTH_PING, queue=CONTROL_QUEUE)
def health_ping(nonce: str) -> None:
    ctx = worker_context()
    ctx.store.record_pong(nonce, ctx.holder)
