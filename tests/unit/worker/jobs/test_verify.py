"""worker/jobs/verify.py: a listed backup's stored bytes, and with its key every file."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.backupfile.format.age import generate_x25519_identity
from common.errors import BackupCorrupted, BackupNotFound
from common.kinds import VERIFY
from common.tasks import new_task
from tests.unit.worker.jobs.conftest import PASSWORD, SOURCE_BYTES, SOURCE_FILES, Recorder
from worker.jobs import verify as verify_job


@pytest.fixture
def verified(ctx, reading_task, password_backup):
    """The result of a verify of the password backup, with its password."""
    task = reading_task("verify", secret={"password": PASSWORD})
    return verify_job.run(ctx, task, Recorder()).result


def test_verify_result_has_the_fields_its_kind_declares(verified):
    assert list(verified) == VERIFY.result_names()


def test_verify_with_the_password_finds_hash_and_content_good(verified):
    assert (verified["backupId"], verified["hashOk"], verified["contentChecked"]) == (
        "b1", True, True)


def test_verify_with_the_password_counts_the_files_and_bytes(verified):
    assert (verified["files"], verified["bytes"]) == (len(SOURCE_FILES), SOURCE_BYTES)


def test_verify_without_the_password_checks_the_hash_only_and_counts_nothing(
        ctx, reading_task, password_backup):
    result = verify_job.run(ctx, reading_task("verify"), Recorder()).result
    assert (result["hashOk"], result["contentChecked"], result["files"], result["bytes"]) == (
        True, False, None, None)


def test_verify_of_a_backup_that_is_not_listed_raises_backup_not_found(ctx, reading_task):
    with pytest.raises(BackupNotFound):
        verify_job.run(ctx, reading_task("verify", backup_id="never-stored"), Recorder())


def _listed(ctx, backup_id="b1"):
    return ctx.store.get_backup(backup_id)


def test_a_verify_marks_the_listing_with_what_it_read(ctx, reading_task, password_backup):
    verify_job.run(ctx, reading_task("verify"), Recorder())
    assert _listed(ctx)["integrity"] == "hash-ok" and _listed(ctx)["checkedOn"] > 0
    verify_job.run(ctx, reading_task("verify", secret={"password": PASSWORD}), Recorder())
    assert _listed(ctx)["integrity"] == "verified"


def test_a_damaged_backup_fails_its_verify_and_is_marked_damaged(ctx, reading_task,
                                                                 password_backup, storage):
    path = storage.folder / password_backup.backup["file"]
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(BackupCorrupted):
        verify_job.run(ctx, reading_task("verify"), Recorder())
    assert _listed(ctx)["integrity"] == "damaged"


def test_a_scheduled_check_reads_the_hash_only_where_its_identity_does_not_open(
        ctx, starter, store, password_backup):
    identity, _ = generate_x25519_identity()
    row = replace(new_task("scheduler", "verify", "backup", "b1", backup_id="b1"),
                  kind="scheduled")
    starter.follow_up(row, {"identity": identity})
    result = verify_job.run(ctx, store.get_task(row.id), Recorder()).result
    assert (result["hashOk"], result["contentChecked"]) == (True, False)


def test_a_verify_that_read_a_file_rekeyed_under_it_checks_it_again(
        ctx, reading_task, password_backup, monkeypatch):
    """The listing it started from had the hash from before a rekey; the file had changed."""
    real = ctx.store.get_backup("b1")
    seen = iter([{**real, "hash": "SHA-512:" + ":".join(["00"] * 64)}, real])
    monkeypatch.setattr(verify_job, "listed_backup", lambda _ctx, _task: next(seen))
    result = verify_job.run(ctx, reading_task("verify"), Recorder()).result
    assert result["hashOk"] and ctx.store.get_backup("b1")["integrity"] == "hash-ok"
