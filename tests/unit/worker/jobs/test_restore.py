"""worker/jobs/restore.py: a listed backup into a new folder under the restore folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.backupfile.format.age import generate_x25519_identity
from common.errors import BackupNotFound
from common.kinds import RESTORE
from tests.unit.worker.jobs.conftest import PASSWORD, SOURCE_BYTES, SOURCE_FILES, Recorder
from worker.jobs import restore as restore_job


def _files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def restored(ctx, reading_task, password_backup):
    """The result of a restore of the password backup, with its password."""
    task = reading_task("restore", secret={"password": PASSWORD})
    return restore_job.run(ctx, task, Recorder()).result


def test_restore_result_has_the_fields_its_kind_declares(restored):
    assert list(restored) == RESTORE.result_names()


def test_restore_writes_back_the_bytes_of_every_source_file(restored):
    assert _files_under(Path(restored["path"]) / "data") == SOURCE_FILES


def test_restore_result_counts_the_files_and_bytes_it_wrote(restored):
    assert (restored["backupId"], restored["files"], restored["bytes"]) == (
        "b1", len(SOURCE_FILES), SOURCE_BYTES)


def test_restore_goes_into_a_new_folder_under_the_restore_folder(ctx, restored):
    assert Path(restored["path"]).parent == ctx.settings.restore_dir


def test_a_backup_to_recipients_restores_with_the_sealed_identity(ctx, reading_task, backed_up):
    identity, recipient = generate_x25519_identity()
    backed_up(kind="scheduled", recipients=[recipient])
    task = reading_task("restore", secret={"identity": identity})
    path = restore_job.run(ctx, task, Recorder()).result["path"]
    assert _files_under(Path(path) / "data") == SOURCE_FILES


def test_restore_of_a_backup_that_is_not_listed_raises_backup_not_found(ctx, reading_task):
    with pytest.raises(BackupNotFound):
        restore_job.run(ctx, reading_task("restore", backup_id="never-stored"), Recorder())
