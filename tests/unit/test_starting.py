"""One way to start a task: the row and its message in one step, for the API and beat alike."""

from __future__ import annotations

import pytest

from common.errors import BackupQuotaExceeded
from common.starting import TaskStarter
from common.tasks import GENERATE_BACKUP, new_backup_task
from common.transit import StaticKeys, TransitSealer
from tests.conftest import queued
from worker import schedule


@pytest.fixture
def starter(store, settings, dispatcher):
    return TaskStarter(store, settings, dispatcher.message, TransitSealer(StaticKeys((b"k" * 32,))))


def _backup_row(user="admin"):
    row = new_backup_task(user, "b-" + user, encrypted=True)
    return row, row.backup_id


def test_a_backup_is_written_with_its_message_and_its_sealed_password(starter, store):
    row, backup_id = _backup_row()
    assert starter.backup(row, backup_id, {"password": "Pa$$"}).outcome == "created"
    assert queued(store) == [(GENERATE_BACKUP, [row.id])]
    sealed = store.sealed_password(row.id)
    assert sealed and "Pa$$" not in sealed
    assert starter.sealer.open(sealed, row.id) == '{"password": "Pa$$"}'


def test_over_the_quota_nothing_is_written(starter, store, settings):
    for n in range(settings.backup_quota):
        row = new_backup_task("admin", f"b{n}", encrypted=False)
        starter.backup(row, row.backup_id)
    row = new_backup_task("admin", "one-too-many", encrypted=False)
    with pytest.raises(BackupQuotaExceeded):
        starter.backup(row, row.backup_id)
    assert store.get_task(row.id) is None and len(queued(store)) == settings.backup_quota


def _due_every_hour(store):
    store.put_schedule({"intervalSeconds": 3600, "keep": 3, "recipients": [], "enabled": True})


def test_a_due_scheduled_backup_is_queued_with_its_row(starter, store):
    _due_every_hour(store)
    task_id = schedule.tick(starter, now=10**13)
    assert store.get_task(task_id).state == "RUNNING"
    assert queued(store) == [(GENERATE_BACKUP, [task_id])]


def test_beat_killed_while_starting_a_scheduled_backup_leaves_no_orphan_row(store, settings):
    """Before, the row was written first and the message sent after: a beat killed between
    the two left a RUNNING task that no worker would ever run, holding a quota slot."""
    def killed(_name, _task_id):
        raise SystemExit("beat killed")

    _due_every_hour(store)
    with pytest.raises(SystemExit):
        schedule.tick(TaskStarter(store, settings, killed), now=10**13)
    assert store.running_task_ids() == [] and store.list_tasks() == []


def test_a_refused_scheduled_run_is_a_failed_task(starter, store, settings):
    _due_every_hour(store)
    for n in range(settings.backup_quota):
        row = new_backup_task("admin", f"b{n}", encrypted=False)
        starter.backup(row, row.backup_id)
    assert schedule.tick(starter, now=10**13) is None
    (refused,) = [t for t in store.list_tasks() if t.user == schedule.SCHEDULER_USER]
    assert (refused.state, refused.error["code"]) == ("FAILED", "BackupQuotaExceeded")
