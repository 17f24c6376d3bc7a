"""worker/jobs/backup.py: the configured sources into one stored file, and the row to list."""

from __future__ import annotations

import re

import pytest

from common.backupfile.format.age import generate_x25519_identity
from common.bootstrap import backup_storage
from common.errors import PasswordUnavailable
from common.kinds import BACKUP
from tests.unit.worker.conftest import make_settings
from tests.unit.worker.jobs.conftest import PASSWORD, SOURCE_BYTES, SOURCE_FILES, Recorder
from worker.context import WorkerContext
from worker.jobs import backup as backup_job

SHA512 = re.compile(r"SHA-512:[0-9A-F]{2}(:[0-9A-F]{2}){63}")


def test_backup_result_has_the_fields_its_kind_declares(password_backup):
    """The runner fails a task whose result drifted from the kinds table."""
    assert list(password_backup.result) == BACKUP.result_names()


def test_backup_result_names_the_backup_of_the_task(password_backup):
    assert password_backup.result["id"] == "b1"


def test_backup_hash_is_a_sha512_in_vcda_format(password_backup):
    assert SHA512.fullmatch(password_backup.result["hash"])


def test_backup_row_counts_the_source_files_and_their_bytes(password_backup):
    row = password_backup.backup
    assert (row["files"], row["sourceBytes"]) == (len(SOURCE_FILES), SOURCE_BYTES)


def test_backup_with_a_password_is_stored_encrypted(password_backup):
    assert (password_backup.backup["file"], password_backup.backup["encrypted"]) == (
        "b1.tar.zst.age", 1)


def test_backup_without_a_password_is_stored_plain(backed_up):
    row = backed_up().backup
    assert (row["file"], row["encrypted"]) == ("b1.tar.zst", 0)


def test_backup_row_size_is_the_size_of_the_stored_file(password_backup, storage):
    assert storage.stat(password_backup.backup["file"]).size == password_backup.backup["size"]


def test_a_manual_backup_row_is_of_kind_manual(password_backup):
    assert password_backup.backup["kind"] == "manual"


def test_a_scheduled_backup_row_keeps_its_kind(backed_up):
    _, recipient = generate_x25519_identity()
    assert backed_up(kind="scheduled", recipients=[recipient]).backup["kind"] == "scheduled"


def test_backup_names_what_to_discard_if_the_task_ended_meanwhile(password_backup):
    assert password_backup.discard == password_backup.backup["id"]


def test_backup_writes_its_record_before_it_is_listed(ctx, password_backup):
    record = ctx.storage.read_record(password_backup.backup["id"])
    assert (record["hash"], record["file"]) == (password_backup.backup["hash"],
                                                password_backup.backup["file"])
    assert record["encryption"] == {"type": "passphrase"}


def test_a_source_holding_the_services_own_folders_leaves_them_out(
        tmp_path, store, sealer, backup_task):
    """Backups, restores and Redis's files live under the data folder: a source that holds
    it (here the whole test folder) must not back them up, nor the backup being written."""
    settings = make_settings(tmp_path, H4_SOURCES=f"all={tmp_path}")
    for own in (settings.restore_dir / "r1", settings.data_dir / "redis"):
        own.mkdir(parents=True)
        (own / "file").write_bytes(b"the service's own")
    ctx = WorkerContext(settings=settings, store=store, sealer=sealer,
                        storage=backup_storage(settings), holder="host:1")
    finish = backup_job.run(ctx, backup_task(), Recorder())
    assert finish.backup["files"] == len(SOURCE_FILES)


def test_a_password_backup_without_its_password_stores_nothing(ctx, backup_task, storage):
    """Sealed passwords live in Redis memory only: a Redis restart drops them."""
    task = backup_task(secret={"password": PASSWORD})
    ctx.store.redis.delete(f"h4:task:{task.id}:secret")
    with pytest.raises(PasswordUnavailable):
        backup_job.run(ctx, task, Recorder())
    assert list(storage.list()) == []


def test_labels_go_into_the_result_the_listing_and_the_record(backed_up, ctx):
    finish = backed_up("b7", labels={"env": "prod"})
    assert list(finish.result) == BACKUP.result_names(present=finish.result)
    assert finish.result["labels"] == {"env": "prod"}
    assert ctx.store.get_backup("b7")["labels"] == {"env": "prod"}
    assert ctx.storage.read_record("b7")["labels"] == {"env": "prod"}


def test_a_backup_without_labels_has_none_in_its_result(password_backup):
    assert "labels" not in password_backup.result
