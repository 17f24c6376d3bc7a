"""worker/jobs/rekey.py and copy.py: the key of a listed backup changed, and the listing and
record following; the second copy brought to a replica and the listing naming it."""

from __future__ import annotations

import hashlib

import pytest

from common.backupfile.format.age import AgeNoMatch, decrypt_bytes
from common.backupfile.io.folder import FolderStorage
from common.backupfile.io.hashing import format_sha512
from common.backupfile.io.mirrored import MirroredStorage
from common.errors import BackupBusy, BackupNotEncrypted, GeneralServerFailure, WrongPassword
from common.kinds import COPY, REKEY
from tests.conftest import queued
from tests.unit.worker.jobs.conftest import PASSWORD, Recorder
from worker.context import WorkerContext
from worker.jobs import copy as copy_job
from worker.jobs import rekey as rekey_job

NEW_PASSWORD = "n3w-backup-Pa$$"


def _sha512(path) -> str:
    return format_sha512(hashlib.sha512(path.read_bytes()).digest())


def _rekey(ctx, reading_task, secret=None):
    task = reading_task("rekey", secret=secret or {"password": PASSWORD,
                                                   "newPassword": NEW_PASSWORD})
    return rekey_job.run(ctx, task, Recorder())


def test_rekey_lists_and_records_the_new_hash(ctx, reading_task, password_backup, storage):
    finish = _rekey(ctx, reading_task)
    path = storage.folder / "b1.tar.zst.age"
    assert list(finish.result) == REKEY.result_names()
    assert finish.result["hash"] == _sha512(path) == ctx.store.get_backup("b1")["hash"]
    assert finish.result["previousHash"] == password_backup.backup["hash"]
    record = storage.read_record("b1")
    assert (record["hash"], record["size"]) == (finish.result["hash"], path.stat().st_size)
    assert decrypt_bytes(path.read_bytes(), passphrase=NEW_PASSWORD)
    with pytest.raises(AgeNoMatch):
        decrypt_bytes(path.read_bytes(), passphrase=PASSWORD)


def test_the_hold_refuses_a_second_rekey_and_a_plain_backup_is_refused(
        ctx, reading_task, password_backup, backed_up, store):
    store.hold_backup("b1", "another-task", 60)
    with pytest.raises(BackupBusy):
        _rekey(ctx, reading_task)
    backed_up(backup_id="plain")
    with pytest.raises(BackupNotEncrypted):
        rekey_job.run(ctx, reading_task("rekey", backup_id="plain",
                                        secret={"newPassword": NEW_PASSWORD}), Recorder())


def test_a_wrong_old_password_changes_nothing(ctx, reading_task, password_backup, storage):
    before = (storage.folder / "b1.tar.zst.age").read_bytes()
    with pytest.raises(WrongPassword):
        _rekey(ctx, reading_task, {"password": "not-it", "newPassword": NEW_PASSWORD})
    assert (storage.folder / "b1.tar.zst.age").read_bytes() == before
    assert ctx.store.get_backup("b1")["hash"] == password_backup.backup["hash"]


@pytest.fixture
def mirrored_ctx(ctx, tmp_path, dispatcher):
    replica = FolderStorage(tmp_path / "replica")
    return WorkerContext(ctx.settings, ctx.store, ctx.sealer,
                         MirroredStorage(ctx.storage, replica), ctx.holder, dispatcher.message)


def test_a_copy_reaches_the_replica_with_its_record_and_is_listed(
        mirrored_ctx, reading_task, password_backup, tmp_path):
    finish = copy_job.run(mirrored_ctx, reading_task("copy"), Recorder())
    copied = tmp_path / "replica" / "b1.tar.zst.age"
    assert list(finish.result) == COPY.result_names()
    assert finish.result["hash"] == _sha512(copied) == password_backup.backup["hash"]
    assert mirrored_ctx.storage.replica.read_record("b1")["hash"] == finish.result["hash"]
    listed = mirrored_ctx.store.get_backup("b1")
    assert listed["replicaHash"] == listed["hash"] and listed["replicatedOn"] > 0


def test_a_rekey_drops_the_replicas_old_copy_and_queues_a_new_one(
        mirrored_ctx, reading_task, password_backup, tmp_path, store):
    copy_job.run(mirrored_ctx, reading_task("copy"), Recorder())
    _rekey(mirrored_ctx, reading_task)
    assert not (tmp_path / "replica" / "b1.tar.zst.age").exists()
    assert store.get_backup("b1")["replicaHash"] == ""
    assert queued(store)[-1][0] == COPY.celery_task


def test_a_copy_without_a_replica_is_a_clear_failure(ctx, reading_task, password_backup):
    with pytest.raises(GeneralServerFailure):
        copy_job.run(ctx, reading_task("copy"), Recorder())


def test_the_sweep_queues_a_copy_for_a_backup_without_a_good_one_once(
        mirrored_ctx, password_backup, store):
    later = password_backup.backup["generatedOn"] + (copy_job.SETTLE_SECONDS + 1) * 1000
    assert copy_job.catch_up(mirrored_ctx, now=later) == ["b1"]
    (row,) = [t for t in store.list_tasks() if t.type == COPY.name]
    assert (row.backup_id, row.user) == ("b1", "scheduler")
    store.redis.delete("h4:copies:swept")  # the next sweep, a minute later
    assert copy_job.catch_up(mirrored_ctx, now=later) == []  # tried within the hour already


def test_the_sweep_leaves_a_good_copy_and_a_new_backup_alone(
        mirrored_ctx, reading_task, password_backup, store, ctx):
    young = password_backup.backup["generatedOn"] + 1000
    assert copy_job.catch_up(mirrored_ctx, now=young) == []  # its own copy task has time
    copy_job.run(mirrored_ctx, reading_task("copy"), Recorder())
    store.redis.delete("h4:copies:swept")
    later = young + copy_job.SETTLE_SECONDS * 2000
    assert copy_job.catch_up(mirrored_ctx, now=later) == []
    assert copy_job.catch_up(ctx, now=later) == []  # no replica, nothing to sweep
