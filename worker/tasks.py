"""Celery tasks: thin wrappers that hand ids to plain Python. Messages carry ids only."""

from common.celery_app import CONTROL_QUEUE
from common.tasks import GENERATE_BACKUP, HEALTH_PING, REAP
from worker import maintenance, runner
from worker.app import celery
from worker.context import worker_context


@celery.task(name=GENERATE_BACKUP, bind=True, max_retries=None)
def generate_backup(self, task_id: str) -> None:
    ctx = worker_context()
    if runner.generate_backup(ctx, task_id) == "busy":
        # A redelivered message while the first run still holds the lease: look again once
        # the lease would have expired if that run died.
        raise self.retry(countdown=ctx.settings.lease_seconds)


@celery.task(name=REAP, queue=CONTROL_QUEUE)
def reap() -> None:
    ctx = worker_context()
    settings = ctx.settings
    maintenance.reap(ctx.store, _requeue, settings.max_attempts, settings.backup_dir)
    maintenance.sweep(settings.backup_dir, settings.restore_dir)


def _requeue(task_id: str) -> None:
    generate_backup.apply_async(args=[task_id])


@celery.task(name=HEALTH_PING, queue=CONTROL_QUEUE)
def health_ping(nonce: str) -> None:
    ctx = worker_context()
    ctx.store.record_pong(nonce, ctx.holder)
