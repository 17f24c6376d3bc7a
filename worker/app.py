"""Worker entry: `celery -A worker.app worker`, or `h4backup worker`."""

import logging
import os

from celery.signals import setup_logging, worker_init

from common.celery_app import make_celery
from common.config import load_settings
from common.logs import configure_logging
from worker.process import limit_arenas, lower_priority

settings = load_settings()
celery = make_celery(settings)
celery.conf.include = ["worker.tasks"]
# The `component` of this process's log lines: `h4backup beat` says "beat".
component = "worker"


@setup_logging.connect
def _json_logs(**_kwargs: object) -> None:
    """Keep Celery from installing its own handlers: every line is one JSON object."""
    configure_logging(component, settings.log_level)


@worker_init.connect
def _settle_process(**_kwargs: object) -> None:
    """Before the pool starts: its processes and threads inherit the priority and the malloc
    arena limit (see worker/process.py)."""
    nice = lower_priority(settings.worker_nice)
    arenas = "one malloc arena" if limit_arenas() else "malloc arenas as the C library has them"
    logging.getLogger("h4backup.worker").info("worker process %d runs at nice %d, %s",
                                              os.getpid(), nice, arenas)
