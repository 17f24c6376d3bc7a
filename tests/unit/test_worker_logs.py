"""Worker log lines: a task's context ends with the task; Celery's lines about the schedule
tick, which runs every second, are DEBUG lines."""

import logging

import pytest
from celery.signals import task_postrun

from common import logs
from common.tasks import GENERATE_BACKUP, SCHEDULE_TICK
from worker.schedule import log_ticks_at_debug

TRACE = logging.getLogger("celery.app.trace")
SUCCEEDED = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"


def _succeeded(name: str) -> None:
    TRACE.info(SUCCEEDED, {"name": name, "id": "1", "runtime": 0.1, "return_value": None})


@pytest.mark.parametrize("state", ["SUCCESS", "FAILURE", "RETRY"])
def test_a_tasks_log_context_ends_with_the_task(state):
    import worker.context  # noqa: F401  (connects the worker's signal handlers)

    logs.bind(taskId="t-1", user="admin", operationID="op-1")
    task_postrun.send(sender=None, task_id="t-1", task=None, args=(), kwargs={},
                      retval=None, state=state)
    assert not logs.CONTEXT.get()


def test_celerys_lines_about_the_tick_are_not_info(caplog):
    log_ticks_at_debug()
    with caplog.at_level(logging.INFO):
        _succeeded(SCHEDULE_TICK)
        _succeeded(GENERATE_BACKUP)
        logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)",
                                              "scheduled-backups", SCHEDULE_TICK)
    assert [r.getMessage().split("[")[0] for r in caplog.records] == [
        f"Task {GENERATE_BACKUP}"]


def test_celerys_lines_about_the_tick_are_debug(caplog):
    log_ticks_at_debug()
    with caplog.at_level(logging.DEBUG):
        _succeeded(SCHEDULE_TICK)
    assert [(r.levelname, r.getMessage().split(" ")[1]) for r in caplog.records] == [
        ("DEBUG", f"{SCHEDULE_TICK}[1]")]
