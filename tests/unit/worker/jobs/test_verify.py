"""worker/jobs/verify.py: a listed backup's stored bytes, and with its key every file."""

from __future__ import annotations

import pytest

from common.errors import BackupNotFound
from common.kinds import VERIFY
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
