"""The table of task kinds: every kind has its handler and its Celery task, and nothing else
runs on a worker."""

from common.kinds import KINDS, kind_of
from worker import jobs, tasks
from worker.app import celery


def test_every_kind_has_a_handler_and_every_handler_a_kind():
    assert set(jobs.HANDLERS) == set(KINDS)


def test_every_kind_has_its_celery_task_under_its_name():
    for kind in KINDS.values():
        assert kind.celery_task in celery.tasks
        assert tasks.CELERY_TASKS[kind.name].name == kind.celery_task


def test_rows_no_worker_runs_have_no_kind():
    assert kind_of({"type": "deleteBackup"}) is None and kind_of({}) is None
    assert kind_of({"type": "backup"}).stores_backup
    assert not kind_of({"type": "restore"}).stores_backup
