"""Backups made in a folder, as the library tests look at them: the outcome and its path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.backupfile.io.folder import FolderStorage
from common.backupfile.write.pipeline import BackupJob, BackupOutcome, run_backup


@dataclass(frozen=True)
class StoredBackup:
    outcome: BackupOutcome
    path: Path

    def __getattr__(self, name: str):
        return getattr(self.outcome, name)


def backup_into(job: BackupJob, reporter) -> StoredBackup:
    """Runs job, whose storage is a folder, and says where the file went."""
    outcome = run_backup(job, reporter)
    assert isinstance(job.storage, FolderStorage)
    return StoredBackup(outcome, job.storage.folder / outcome.file_name)
