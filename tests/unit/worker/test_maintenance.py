"""worker/maintenance.py, beyond tests/unit/test_maintenance.py: lost tasks of every kind, a
task lost again, and the sweep of orphan temporaries and of stale restore stagings."""

from __future__ import annotations

import os
import time

import pytest

from common.tasks import new_backup_task, new_task
from worker.maintenance import ORPHAN_AGE_SECONDS, reap, sweep

MAX_ATTEMPTS = 3


def _lose_worker(store, task_id):
    store.redis.delete(f"h4:task:{task_id}:lease")


def _running(store, kind, backup_id="b1", attempts=1):
    """A task of this kind claimed `attempts` times, each time by a worker that then died."""
    if kind == "backup":
        row = new_backup_task("admin", backup_id, encrypted=False)
        store.create_backup_task(row, backup_id, 10, None, 60)
    else:
        row = new_task("admin", kind, "backup", backup_id, backup_id=backup_id)
        store.create_task(row)
    for n in range(attempts):
        store.claim(row.id, f"w{n}", 30)
        _lose_worker(store, row.id)
    return row.id


class Sent:
    """The requeue callback: records what the reaper sends again."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, task_id: str, kind: str) -> None:
        self.calls.append((task_id, kind))


# --- reap ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["restore", "verify"])
def test_a_lost_task_is_sent_again_as_its_own_kind(store, storage, kind):
    task_id = _running(store, kind)
    sent = Sent()
    reap(store, sent, MAX_ATTEMPTS, storage)
    assert sent.calls == [(task_id, kind)]


def test_a_task_lost_again_on_its_next_attempt_is_sent_again(store, storage):
    task_id = _running(store, "backup")
    sent = Sent()
    reap(store, sent, MAX_ATTEMPTS, storage)
    store.claim(task_id, "w-next", 30)  # the requeued message reaches a worker, which dies
    _lose_worker(store, task_id)
    reap(store, sent, MAX_ATTEMPTS, storage)
    assert sent.calls == [(task_id, "backup"), (task_id, "backup")]


def test_a_task_out_of_attempts_is_not_sent_again(store, storage):
    _running(store, "backup", attempts=MAX_ATTEMPTS)
    sent = Sent()
    reap(store, sent, MAX_ATTEMPTS, storage)
    assert sent.calls == []


def test_giving_up_on_a_restore_keeps_the_backup_it_was_reading(store, storage):
    storage.prepare()
    with storage.create("b1.tar.zst") as writer:
        writer.write(b"a listed backup")
    task_id = _running(store, "restore", attempts=MAX_ATTEMPTS)
    assert reap(store, Sent(), MAX_ATTEMPTS, storage).failed == [task_id]
    assert storage.stat("b1.tar.zst") is not None


def test_a_running_id_whose_row_is_gone_is_skipped(store, storage):
    task_id = _running(store, "backup")
    store.redis.delete(store.task_key(task_id))
    report = reap(store, Sent(), MAX_ATTEMPTS, storage)
    assert (report.requeued, report.failed) == ([], [])


# --- sweep -----------------------------------------------------------------------------------

def _temporary(folder, name, age_seconds):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"unfinished")
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


OLD = ORPHAN_AGE_SECONDS + 60
ORPHAN = ".b1.tar.zst.0123456789abcdef.part"


@pytest.mark.parametrize("where", ["backup_dir", "restore_dir"])
def test_sweep_removes_an_old_temporary_file(store, storage, settings, where):
    orphan = _temporary(getattr(settings, where), ORPHAN, OLD)
    sweep(store, storage, settings.restore_dir)
    assert not orphan.exists()


@pytest.mark.parametrize("where", ["backup_dir", "restore_dir"])
def test_sweep_keeps_a_temporary_file_a_writer_may_still_own(store, storage, settings, where):
    fresh = _temporary(getattr(settings, where), ORPHAN, 60)
    sweep(store, storage, settings.restore_dir)
    assert fresh.exists()


def test_sweep_keeps_a_stored_backup_however_old(store, storage, settings):
    stored = _temporary(settings.backup_dir, "b1.tar.zst", OLD)
    sweep(store, storage, settings.restore_dir)
    assert stored.exists()


def _staging(settings, backup_id):
    folder = settings.restore_dir / f".{backup_id}-20261126T000000.000Z.0011aabb.staging"
    (folder / "data").mkdir(parents=True)
    return folder


def test_sweep_keeps_the_staging_of_a_restore_whose_worker_lives(store, storage, settings):
    task_id = _running(store, "restore", "b1", attempts=0)
    store.claim(task_id, "w1", 30)
    staging = _staging(settings, "b1")
    sweep(store, storage, settings.restore_dir)
    assert staging.exists()


def test_sweep_removes_the_staging_of_a_restore_whose_worker_died(store, storage, settings):
    _running(store, "restore", "b1", attempts=1)
    staging = _staging(settings, "b1")
    sweep(store, storage, settings.restore_dir)
    assert not staging.exists()


def test_sweep_keeps_no_staging_for_a_living_task_of_another_kind(store, storage, settings):
    """Only a restore writes a staging folder: a verify of the same backup keeps none alive."""
    task_id = _running(store, "verify", "b1", attempts=0)
    store.claim(task_id, "w1", 30)
    staging = _staging(settings, "b1")
    sweep(store, storage, settings.restore_dir)
    assert not staging.exists()


def test_sweep_before_any_folder_exists_does_nothing(store, storage, settings):
    sweep(store, storage, settings.restore_dir)
    assert not settings.restore_dir.exists() and not settings.backup_dir.exists()
