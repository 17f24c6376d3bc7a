"""The Celery messages the API queues: task ids only, pushed by the store with the task row."""

from __future__ import annotations

from celery import Celery

from common.celery_app import TaskMessage, run_message, task_message
from common.tasks import HEALTH_PING


class CeleryDispatcher:
    def __init__(self, celery_app: Celery) -> None:
        self.celery = celery_app

    def message(self, task_name: str, task_id: str) -> TaskMessage:
        return run_message(self.celery, task_name, task_id)

    def ping_message(self, nonce: str, expires: float) -> TaskMessage:
        # An unanswered ping expires instead of waiting in the queue for a worker to return.
        return task_message(self.celery, HEALTH_PING, [nonce], expires=expires)
