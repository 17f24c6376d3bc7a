"""Celery tasks: thin wrappers that hand a task id to the runner. Messages carry ids only."""

from common.tasks import GENERATE_BACKUP
from worker import runner
from worker.app import celery
from worker.context import worker_context


@celery.task(name=GENERATE_BACKUP, bind=True, max_retries=None)
def generate_backup(self, task_id: str) -> None:
    if runner.generate_backup(worker_context(), task_id) == "busy":
        # A redelivered message while the first run still holds the lease: look again once
        # the lease would have expired if that run died.
        raise self.retry(countdown=runner.LEASE_SECONDS)
