"""Sends Celery messages for tasks whose rows are already written. Messages carry ids only."""

from __future__ import annotations

from celery import Celery

from common.celery_app import CONTROL_QUEUE
from common.tasks import HEALTH_PING


class CeleryDispatcher:
    def __init__(self, celery_app: Celery) -> None:
        self.celery = celery_app

    def send(self, task_name: str, task_id: str) -> None:
        # The Celery task id is the API task id, so Flower and the API show the same id.
        self.celery.send_task(task_name, args=[task_id], task_id=task_id)

    def ping(self, nonce: str, expires: float) -> None:
        # An unanswered ping expires instead of waiting in the queue for a worker to return.
        self.celery.send_task(HEALTH_PING, args=[nonce], queue=CONTROL_QUEUE, expires=expires)
