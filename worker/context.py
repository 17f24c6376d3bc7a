"""What a worker process needs to run tasks: settings, the store and the transit sealer.

Built lazily and once per process, after the pool forks, so that no Redis connection is
shared between processes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

from celery.signals import task_postrun

from common import logs
from common.backupfile.io.storage import BackupStorage
from common.bootstrap import backup_storage, transit_sealer
from common.celery_app import TaskMessage, run_message
from common.config import Settings, load_settings
from common.starting import MessageFor, TaskStarter
from common.store import Store
from common.transit import TransitSealer


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    store: Store
    sealer: TransitSealer
    storage: BackupStorage
    holder: str  # who holds a task's lease: host and pid
    # Queues the tasks a worker starts after another (a backup's copy to the replica).
    message_for: MessageFor | None = None

    def starter(self) -> TaskStarter:
        if self.message_for is None:
            raise RuntimeError("this worker context cannot start tasks")
        return TaskStarter(self.store, self.settings, self.message_for)


@cache
def _context_for(pid: int) -> WorkerContext:
    settings = load_settings()
    store = Store.from_url(settings.redis, settings.task_ttl_seconds)
    return WorkerContext(settings, store, transit_sealer(settings), backup_storage(settings),
                         f"{socket.gethostname()}:{pid}", _message_for)


def _message_for(name: str, task_id: str) -> TaskMessage:
    from worker.app import celery  # the app module imports the tasks, which import this one

    return run_message(celery, name, task_id)


def worker_context() -> WorkerContext:
    return _context_for(os.getpid())


@task_postrun.connect
def _forget_log_context(**_kwargs: object) -> None:
    """A task's taskId, user and operationID must not mark the lines its process logs after
    it; Celery sends this signal however the task ended (succeeded, failed, retried)."""
    logs.clear()
