"""Fixtures of the handlers' tests: a real source tree, tasks started as the API starts them,
and a backup made by the backup handler and listed as the runner lists it."""

from __future__ import annotations

import pytest

from common.kinds import BACKUP
from common.tasks import new_backup_task, new_task
from worker.jobs import backup as backup_job

PASSWORD = "backup-Pa$$"
# Relative path -> bytes of the source tree every test backs up.
SOURCE_FILES = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "sub/b.bin": bytes(range(256)) * 400,
    "sub/deeper/c.txt": "ünïcödé\n".encode(),
}
SOURCE_BYTES = sum(map(len, SOURCE_FILES.values()))


class Recorder:
    """The pipeline's reporter: keeps what it is told, never asks to stop."""

    def __init__(self) -> None:
        self.percents: list[int] = []
        self.warnings: list = []

    def progress(self, percent: int) -> None:
        self.percents.append(percent)

    def warning(self, error) -> None:
        self.warnings.append(error)

    def should_stop(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def sources(settings):
    (source,) = settings.sources
    for name, data in SOURCE_FILES.items():
        path = source.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return source.path


@pytest.fixture
def backup_task(starter, store):
    """A backup task as the API (or beat, with kind and recipients) starts one."""

    def make(backup_id="b1", secret=None, **fields):
        encrypted = bool(secret or fields.get("recipients"))
        # as the API writes it: [] for no recipients
        row = new_backup_task("admin", backup_id, encrypted=encrypted,
                              **{"recipients": [], **fields})
        starter.backup(row, backup_id, secret)
        return store.get_task(row.id)

    return make


@pytest.fixture
def reading_task(starter, store):
    """A restore or verify task of a backup, as the API starts one."""

    def make(kind, backup_id="b1", secret=None):
        row = new_task("admin", kind, "backup", backup_id, backup_id=backup_id)
        starter.task(row, secret)
        return store.get_task(row.id)

    return make


@pytest.fixture
def backed_up(ctx, backup_task):
    """Run the backup handler on a new task and list its backup, as the runner does."""

    def make(backup_id="b1", secret=None, **fields):
        task = backup_task(backup_id, secret, **fields)
        finish = backup_job.run(ctx, task, Recorder())
        ctx.store.succeed(task.id, finish.result, BACKUP.result_type, backup=finish.backup)
        return finish

    return make


@pytest.fixture
def password_backup(backed_up):
    return backed_up(secret={"password": PASSWORD})
