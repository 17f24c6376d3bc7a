"""worker/schedule.py: the tick that starts a due scheduled backup, once per slot; retention of
scheduled backups; Celery's tick lines demoted to DEBUG."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import fakeredis
import pytest

from common.backupfile.format.age import generate_x25519_identity
from common.backupfile.io.folder import FolderStorage
from common.clock import now_ms
from common.retention import Policy
from common.starting import TaskStarter
from common.store import Store
from common.tasks import GENERATE_BACKUP, SCHEDULE_TICK, new_backup_task
from tests.conftest import queued
from tests.unit.worker.conftest import make_settings
from worker import schedule

NOW = 10**13  # far past any last run that put_schedule records
_, RECIPIENT = generate_x25519_identity()


def _every_hour(store, **config):
    store.put_schedule({"intervalSeconds": 3600, "keep": 2, "recipients": [RECIPIENT],
                        "enabled": True, **config})


def _scheduler_tasks(store):
    return [t for t in store.list_tasks() if t.user == schedule.SCHEDULER_USER]


def _fill_quota(starter, settings):
    for n in range(settings.backup_quota):
        row = new_backup_task("admin", f"manual-{n}", encrypted=False, recipients=[])
        starter.backup(row, row.backup_id)


# --- tick ------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [None, {"intervalSeconds": 1, "enabled": False}],
                         ids=["no-schedule", "disabled"])
def test_a_disabled_or_missing_schedule_starts_nothing(starter, store, config):
    if config is not None:
        store.put_schedule(config)
    assert schedule.tick(starter, now=NOW) is None
    assert store.list_tasks() == [] and queued(store) == []


def test_a_schedule_not_yet_due_starts_nothing(starter, store):
    _every_hour(store)
    assert schedule.tick(starter, now=int(store.schedule_last_run()) + 1000) is None
    assert store.list_tasks() == []


def test_a_due_schedule_queues_exactly_one_backup_message(starter, store):
    _every_hour(store)
    task_id = schedule.tick(starter, now=NOW)
    assert queued(store) == [(GENERATE_BACKUP, [task_id])]


def test_the_scheduled_row_is_kind_scheduled_by_the_scheduler_to_the_recipients(starter, store):
    _every_hour(store)
    task = store.get_task(schedule.tick(starter, now=NOW))
    assert (task.type, task.kind, task.user, task.recipients) == (
        "backup", "scheduled", "scheduler", [RECIPIENT])


def test_a_schedule_with_recipients_starts_an_encrypted_backup(starter, store):
    _every_hour(store)
    assert int(store.get_task(schedule.tick(starter, now=NOW)).encrypted) == 1


def test_a_schedule_without_recipients_starts_a_plain_backup(starter, store):
    """Encrypted without recipients would need a sealed password, which beat never has: the
    worker would fail the backup PasswordUnavailable."""
    _every_hour(store, recipients=[])
    assert int(store.get_task(schedule.tick(starter, now=NOW)).encrypted) == 0


def test_a_second_tick_at_the_same_instant_starts_nothing(starter, store):
    _every_hour(store)
    schedule.tick(starter, now=NOW)
    assert schedule.tick(starter, now=NOW) is None
    assert len(queued(store)) == 1


class _OtherBeatFirst(Store):
    """A beat's store whose first slot take lets another beat's whole tick run just before it:
    both beats read the same last run, and both find the backup due."""

    def __init__(self, client, other_tick) -> None:
        super().__init__(client, task_ttl_seconds=60)
        self._other_tick = other_tick

    def take_schedule_slot(self, seen_last: str, new_last: int) -> bool:
        other, self._other_tick = self._other_tick, None
        if other is not None:
            other()
        return super().take_schedule_slot(seen_last, new_last)


def test_two_beats_ticking_at_once_start_one_backup(settings, dispatcher):
    server = fakeredis.FakeServer()
    other = Store(fakeredis.FakeRedis(server=server, decode_responses=True), 60)
    started = []
    racing = _OtherBeatFirst(fakeredis.FakeRedis(server=server, decode_responses=True),
                             lambda: started.append(schedule.tick(
                                 TaskStarter(other, settings, dispatcher.message), now=NOW)))
    _every_hour(racing)
    started.append(schedule.tick(TaskStarter(racing, settings, dispatcher.message), now=NOW))
    assert [s is not None for s in started] == [True, False]
    assert len(other.list_tasks()) == 1 and len(queued(other)) == 1


def test_a_tick_over_the_quota_returns_none_instead_of_raising(starter, store, settings):
    _every_hour(store)
    _fill_quota(starter, settings)
    assert schedule.tick(starter, now=NOW) is None


def test_a_refused_scheduled_run_is_a_failed_task_of_kind_scheduled(starter, store, settings):
    _every_hour(store)
    _fill_quota(starter, settings)
    schedule.tick(starter, now=NOW)
    (refused,) = _scheduler_tasks(store)
    assert (refused.state, refused.kind, refused.error["code"]) == (
        "FAILED", "scheduled", "BackupQuotaExceeded")


def test_a_refused_scheduled_run_is_written_failed_in_one_step(starter, store, settings,
                                                               monkeypatch):
    """No moment exists where the refused row is RUNNING: a beat killed there would leave it."""
    _every_hour(store)
    _fill_quota(starter, settings)
    monkeypatch.setattr(store, "fail", lambda *args: pytest.fail("a second step was taken"))
    schedule.tick(starter, now=NOW)
    (refused,) = _scheduler_tasks(store)
    assert refused.state == "FAILED"
    assert refused.id not in store.redis.smembers("h4:tasks:running")


def test_a_refused_scheduled_run_still_takes_its_slot(starter, store, settings):
    """The next run is one period later, not on every tick while the quota stays full."""
    _every_hour(store)
    _fill_quota(starter, settings)
    schedule.tick(starter, now=NOW)
    schedule.tick(starter, now=NOW + 1000)
    assert store.schedule_last_run() == str(NOW) and len(_scheduler_tasks(store)) == 1


def test_a_scheduler_at_its_task_cap_records_too_many_tasks(store, dispatcher, tmp_path):
    capped = TaskStarter(store, make_settings(tmp_path, H4_USER_TASK_CAP="1"),
                         dispatcher.message)
    _every_hour(store)
    assert schedule.tick(capped, now=NOW) is not None  # still running: the cap is reached
    schedule.tick(capped, now=NOW + 3600 * 1000)
    assert [t.error["code"] for t in _scheduler_tasks(store) if t.error] == [
        "TooManyTasks"]


# --- retention -------------------------------------------------------------------------------

def _stored(store, storage, backup_id, generated_on, kind):
    """A backup listed as a worker lists one, with its file in the storage."""
    row = new_backup_task("admin", backup_id, encrypted=False)
    store.create_backup_task(row, backup_id, 100, None, 60)
    name = f"{backup_id}.tar.zst"
    storage.prepare()
    with storage.create(name) as writer:
        writer.write(b"backup bytes")
    store.succeed(row.id, {"id": backup_id}, "BackupInfo",
                  backup={"id": backup_id, "generatedOn": generated_on, "hash": "SHA-512:00",
                          "file": name, "size": 12, "kind": kind})
    return name


def _succeeded(kind=None):
    """The row of a backup task that just succeeded: beat's are of kind scheduled, the API's
    (manual) carry no kind."""
    return new_backup_task("admin", "next", encrypted=False, kind=kind)


def _listed_ids(store):
    return [b["id"] for b in store.list_backups()]


def test_prune_unlists_the_oldest_scheduled_backups_beyond_keep(store, storage):
    for n in range(1, 5):
        _stored(store, storage, f"s{n}", n, "scheduled")
    assert schedule.prune(store, storage, Policy({"keepLast": 2})) == ["s2", "s1"]
    assert _listed_ids(store) == ["s4", "s3"]


def test_prune_deletes_the_files_of_the_backups_it_unlists(store, storage):
    old = _stored(store, storage, "s1", 1, "scheduled")
    kept = _stored(store, storage, "s2", 2, "scheduled")
    schedule.prune(store, storage, Policy({"keepLast": 1}))
    assert (storage.stat(old), storage.stat(kept) is not None) == (None, True)


def test_prune_never_touches_a_manual_backup(store, storage):
    manual = _stored(store, storage, "m0", 0, "manual")
    for n in range(1, 4):
        _stored(store, storage, f"s{n}", n, "scheduled")
    schedule.prune(store, storage, Policy({"keepLast": 1}))
    assert "m0" in _listed_ids(store) and storage.stat(manual) is not None


class LockedUntilTomorrow(FolderStorage):
    """A folder whose files all report an object lock that has not ended."""

    def stat(self, name):
        found = super().stat(name)
        return found and replace(found, locked_until_ms=now_ms() + 86_400_000)


def test_prune_skips_a_backup_still_under_object_lock_and_keeps_it_listed(store, tmp_path):
    locked = LockedUntilTomorrow(tmp_path / "locked")
    for n in range(1, 4):
        _stored(store, locked, f"s{n}", n, "scheduled")
    assert schedule.prune(store, locked, Policy({"keepLast": 1})) == []
    assert _listed_ids(store) == ["s3", "s2", "s1"]


def test_prune_keeping_as_many_as_there_are_deletes_nothing(store, storage):
    for n in range(1, 3):
        _stored(store, storage, f"s{n}", n, "scheduled")
    assert schedule.prune(store, storage, Policy({"keepLast": 2})) == []


def test_after_a_scheduled_backup_succeeds_the_schedules_keep_applies(store, storage):
    _every_hour(store, keep=1)
    for n in range(1, 4):
        _stored(store, storage, f"s{n}", n, "scheduled")
    schedule.after_success(store, storage, _succeeded("scheduled"))
    assert _listed_ids(store) == ["s3"]


def test_after_a_manual_backup_succeeds_nothing_is_pruned(store, storage):
    _every_hour(store, keep=1)
    for n in range(1, 4):
        _stored(store, storage, f"s{n}", n, "scheduled")
    schedule.after_success(store, storage, _succeeded())
    assert len(_listed_ids(store)) == 3


def test_without_a_keep_in_the_schedule_nothing_is_pruned(store, storage):
    _every_hour(store, keep=None)
    for n in range(1, 4):
        _stored(store, storage, f"s{n}", n, "scheduled")
    schedule.after_success(store, storage, _succeeded("scheduled"))
    assert len(_listed_ids(store)) == 3


# --- TickAtDebug -----------------------------------------------------------------------------

@pytest.fixture
def debug_logger():
    """A logger of its own at DEBUG, so that a demoted line passes the filter."""
    logger = logging.getLogger("tests.worker.tick")
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(logging.NOTSET)


def _record(logger, level, *args):
    return logger.makeRecord(logger.name, level, __file__, 1,
                             "Scheduler: Sending due task %s (%s)", args, None)


def test_tick_at_debug_demotes_an_info_line_about_the_tick(debug_logger):
    record = _record(debug_logger, logging.INFO, "scheduled-backups", SCHEDULE_TICK)
    assert schedule.TickAtDebug().filter(record)
    assert (record.levelno, record.levelname) == (logging.DEBUG, "DEBUG")


def test_tick_at_debug_leaves_an_info_line_about_another_task_at_info(debug_logger):
    record = _record(debug_logger, logging.INFO, "reap-lost-tasks", GENERATE_BACKUP)
    assert schedule.TickAtDebug().filter(record)
    assert (record.levelno, record.levelname) == (logging.INFO, "INFO")


def test_tick_at_debug_leaves_a_warning_about_the_tick_a_warning(debug_logger):
    record = _record(debug_logger, logging.WARNING, "scheduled-backups", SCHEDULE_TICK)
    assert schedule.TickAtDebug().filter(record)
    assert record.levelno == logging.WARNING


def test_tick_at_debug_drops_a_demoted_line_when_its_logger_is_above_debug(debug_logger):
    debug_logger.setLevel(logging.INFO)
    record = _record(debug_logger, logging.INFO, "scheduled-backups", SCHEDULE_TICK)
    assert not schedule.TickAtDebug().filter(record)


# --- scheduled integrity checks --------------------------------------------------------------

def _list(store, backup_id: str, encrypted: bool) -> None:
    row = new_backup_task("admin", backup_id, encrypted=encrypted)
    store.create_backup_task(row, backup_id, 10, None, 60)
    store.succeed(row.id, {"id": backup_id}, "BackupInfo", backup={
        "id": backup_id, "generatedOn": 1, "hash": "SHA-512:00", "size": 3,
        "file": f"{backup_id}.tar.zst", "encrypted": int(encrypted)})


@pytest.fixture
def identity_file(tmp_path):
    identity, _ = generate_x25519_identity()
    path = tmp_path / "check-identity.txt"
    path.write_text(f"# created: 2026-12-07\n# public key: age1...\n{identity}\n")
    return path, identity


def test_a_due_check_verifies_every_listed_backup_once(starter, store, sealer,
                                                        identity_file):
    path, identity = identity_file
    _list(store, "plain", encrypted=False)
    _list(store, "sealed", encrypted=True)
    store.put_check_schedule({"enabled": True, "intervalSeconds": 3600, "full": True})
    assert schedule.check_tick(starter, path, now=int(store.check_last_run()) + 1000) == []
    started = schedule.check_tick(starter, path, now=NOW)
    assert schedule.check_tick(starter, path, now=NOW + 1) == []  # the slot is taken
    rows = {store.get_task(task_id).backup_id: store.get_task(task_id) for task_id in started}
    assert sorted(rows) == ["plain", "sealed"]
    assert {(r.type, r.user, r.kind) for r in rows.values()} == {
        ("verify", schedule.SCHEDULER_USER, "scheduled")}
    assert store.sealed_password(rows["plain"].id) is None
    sealed = store.sealed_password(rows["sealed"].id)
    assert identity not in sealed
    assert json.loads(sealer.open(sealed, rows["sealed"].id)) == {"identity": identity}
    assert [name for name, _ in queued(store)] == ["h4.backup.verify"] * 2


def test_a_check_without_full_or_without_the_file_reads_the_hash_only(starter, store, tmp_path,
                                                                       caplog):
    _list(store, "sealed", encrypted=True)
    store.put_check_schedule({"enabled": True, "intervalSeconds": 3600, "full": True})
    started = schedule.check_tick(starter, tmp_path / "missing.txt", now=NOW)
    assert store.sealed_password(started[0]) is None
    assert "H4_CHECK_IDENTITY_FILE" in caplog.text
    store.put_check_schedule({"enabled": False, "intervalSeconds": 60})
    assert schedule.check_tick(starter, None, now=NOW * 2) == []
